"""`halles peer ...`, `halles follow`, `halles sync`, `halles reshare`, `halles deliveries prune|retry`,
`halles inbox prune|failed|retry`: the network from the shell."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext

from node.extensions import db


def _validated() -> None:
    from node.cli import validated

    validated()


def register_cli(app: Flask) -> None:
    @app.cli.group("peer")
    def peer() -> None:
        """Charter-gated peering with other third-places."""

    @peer.command("request")
    @click.argument("url")
    @with_appcontext
    def peer_request(url: str) -> None:
        """Ask the node at URL to peer, attesting its current charter."""
        from node.fedi.peering import request_peering

        _validated()
        actor = request_peering(url)
        db.session.commit()
        charter = actor.document.get("charter", {})
        click.echo(f"peering request sent to {actor.name} ({actor.ap_id}), attesting charter "
                   f"{charter.get('version')} sha256={charter.get('sha256')}")
        click.echo("the request is delivered by `halles worker`; their admin approves it")

    @peer.command("approve")
    @click.argument("url")
    @with_appcontext
    def peer_approve(url: str) -> None:
        """Approve a peering request (sends Accept)."""
        from node.fedi.peering import approve

        _validated()
        row = approve(url)
        db.session.commit()
        click.echo(f"approved {row.actor.ap_id}")

    @peer.command("refuse")
    @click.argument("url")
    @with_appcontext
    def peer_refuse(url: str) -> None:
        """Refuse a peering request (sends Reject)."""
        from node.fedi.peering import refuse

        _validated()
        row = refuse(url)
        db.session.commit()
        click.echo(f"refused {row.actor.ap_id}")

    @peer.command("list")
    @with_appcontext
    def peer_list() -> None:
        """Peers, followers and followed accounts with their state."""
        from node.fedi.peering import list_peers

        _validated()
        views = list_peers()
        if not views:
            click.echo("no peers yet: `halles peer request URL` asks another node")
            return
        for view in views:
            data = view.as_dict()
            flags = []
            if data["blocked"]:
                flags.append("BLOCKED")
            if data["incoming"] == "accepted" and data["attestation"] is not None:
                flags.append("charter ok" if data["attests_current_charter"] else "charter OUTDATED")
            click.echo(f"{data['actor']}  {data['name']} ({data['city'] or '?'})  "
                       f"they->us: {data['incoming'] or '-'}  us->them: {data['outgoing'] or '-'}  {' '.join(flags)}")

    @peer.command("show")
    @click.argument("url")
    @with_appcontext
    def peer_show(url: str) -> None:
        """A peering request with the diff between the requester's charter and ours."""
        from node.fedi.peering import _known_actor, charter_diff

        _validated()
        actor = _known_actor(url)
        click.echo(f"{actor.name} — {actor.ap_id} ({actor.city})")
        click.echo(charter_diff(url))

    @peer.command("block")
    @click.argument("domain")
    @with_appcontext
    def peer_block(domain: str) -> None:
        """Drop everything from DOMAIN and refuse whatever it sends."""
        from node.fedi.peering import block

        _validated()
        purged = block(domain)
        db.session.commit()
        click.echo(f"blocked {domain}; purged {purged} actor(s)")

    @peer.command("unblock")
    @click.argument("domain")
    @with_appcontext
    def peer_unblock(domain: str) -> None:
        from node.fedi.peering import unblock

        _validated()
        unblock(domain)
        db.session.commit()
        click.echo(f"unblocked {domain}")

    @peer.command("remove")
    @click.argument("url")
    @with_appcontext
    def peer_remove(url: str) -> None:
        """End a peering both ways and forget what the peer published."""
        from node.fedi.peering import remove

        _validated()
        actor = remove(url)
        db.session.commit()
        click.echo(f"removed {actor.ap_id}")

    @app.cli.group("deliveries")
    def deliveries() -> None:
        """The rows of outgoing federation deliveries."""

    @deliveries.command("prune")
    @click.option("--older-than", "older_than", type=click.IntRange(min=1), default=None, metavar="DAYS",
                  help="remove sent deliveries older than DAYS (dead ones: 3 x DAYS); "
                       "default HALLES_DELIVERY_RETENTION_DAYS")
    @with_appcontext
    def deliveries_prune(older_than: int | None) -> None:
        """Delete old sent and dead delivery rows now (the worker also does it every hour). Pending
        deliveries and the outbox itself (what peers catch up from) are kept."""
        from node.fedi.outbox import prune_deliveries

        _validated()
        pruned = prune_deliveries(older_than_days=older_than)
        click.echo(f"removed {pruned.sent} sent deliveries older than {pruned.sent_days:g} days and "
                   f"{pruned.dead} dead deliveries older than {pruned.dead_days:g} days")

    @deliveries.command("retry")
    @click.option("--domain", default=None, help="only the deliveries to this domain (e.g. lyon.example)")
    @with_appcontext
    def deliveries_retry(domain: str | None) -> None:
        """Send the deliveries given up again, from their first attempt (after a peer comes back).
        Those to a blocked domain stay given up."""
        from node.fedi.failures import retry_given_up_deliveries

        _validated()
        queued = retry_given_up_deliveries(domain.strip().lower() if domain else None)
        db.session.commit()
        click.echo(f"{queued} given-up deliveries queued again" + (f" for {domain}" if domain else ""))

    @app.cli.group("inbox")
    def inbox() -> None:
        """The activities this node received."""

    @inbox.command("prune")
    @click.option("--older-than", "older_than", type=click.IntRange(min=1), default=None, metavar="DAYS",
                  help="remove applied and ignored activities received more than DAYS ago (failed ones: "
                       "3 x DAYS); default HALLES_INBOX_RETENTION_DAYS")
    @with_appcontext
    def inbox_prune(older_than: int | None) -> None:
        """Delete old received activities now (the worker also does it every hour). Activities not
        applied yet are kept."""
        from node.fedi.inbox_retention import prune_inbox

        _validated()
        pruned = prune_inbox(older_than_days=older_than)
        click.echo(f"removed {pruned.done} applied or ignored activities received more than {pruned.days:g} days "
                   f"ago and {pruned.failed} failed ones received more than {pruned.failed_days:g} days ago")

    @inbox.command("failed")
    @click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
                  help="how many to list, newest first")
    @with_appcontext
    def inbox_failed(limit: int) -> None:
        """List the received activities whose application failed, with the error."""
        from node.fedi.failures import count_failed_activities, failed_activities

        _validated()
        total = count_failed_activities()
        click.echo(f"{total} received activities failed" + (f"; the latest {limit}:" if total > limit else
                                                             ":" if total else ""))
        for item in failed_activities(limit):
            click.echo(f"  #{item.id}  {item.received_at:%Y-%m-%d %H:%M} UTC  {item.activity_type} {item.activity_id}"
                       f"  from {item.signer}\n      {item.error or 'no error recorded'}")

    @inbox.command("retry")
    @click.argument("item_ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID]...")
    @with_appcontext
    def inbox_retry(item_ids: tuple[int, ...]) -> None:
        """Apply failed received activities again (all of them, or the IDs `halles inbox failed` lists),
        e.g. after an upgrade that fixes what made them fail. The worker applies them."""
        from node.common.errors import NotFound
        from node.fedi.failures import retry_failed_activities

        _validated()
        try:
            queued = retry_failed_activities(list(item_ids) if item_ids else None)
        except NotFound as exc:
            raise click.ClickException(str(exc)) from None
        db.session.commit()
        click.echo(f"{queued} failed activities queued again for the worker")

    @app.cli.command("follow")
    @click.argument("account_or_url")
    @with_appcontext
    def follow_command(account_or_url: str) -> None:
        """Follow any ActivityPub actor (acct:group@host or URL) to import its events."""
        from node.fedi.peering import follow

        _validated()
        actor = follow(account_or_url)
        db.session.commit()
        click.echo(f"follow request sent to {actor.ap_id}")

    @app.cli.command("sync")
    @with_appcontext
    def sync_command() -> None:
        """Catch up now with every followed node (all pages since the last cursor)."""
        from node.fedi.sync import sync_all
        from node.fedi.worker import process_inbox

        _validated()
        report = sync_all()
        while process_inbox():
            pass
        if not report:
            click.echo("nothing to sync: this node follows no one yet")
        for actor, outcome in report.items():
            click.echo(f"{actor}: {outcome if isinstance(outcome, str) else f'{outcome} new activities'}")

    @app.cli.command("reshare")
    @click.argument("event_url")
    @with_appcontext
    def reshare_command(event_url: str) -> None:
        """Re-share (Announce) a partner's event to this node's peers and followers."""
        from node.fedi.resharing import reshare_by_url

        _validated()
        reshare_by_url(event_url)
        db.session.commit()
        click.echo(f"re-shared {event_url}")
