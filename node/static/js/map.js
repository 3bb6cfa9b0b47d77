/* The map of places and events (Leaflet). The list under it is the page: if the script, Leaflet or
   the tiles cannot load, the map hides itself and says so, and the list stays. */
(function () {
  "use strict";
  var container = document.getElementById("map");
  var note = document.getElementById("map-note");
  var dataNode = document.getElementById("map-data");
  if (!container || !dataNode) { return; }

  function giveUp(message) {
    container.hidden = true;
    if (note) {
      note.textContent = message || container.getAttribute("data-failed");
      note.hidden = false;
    }
  }

  if (typeof window.L === "undefined") { giveUp(); return; }
  var tiles = container.getAttribute("data-tiles");
  if (!tiles) { giveUp(); return; }

  var points = [];
  try { points = JSON.parse(dataNode.textContent) || []; } catch (e) { points = []; }

  container.hidden = false;
  var map = window.L.map(container, { scrollWheelZoom: false, zoomControl: false });
  window.L.control.zoom({
    zoomInTitle: container.getAttribute("data-zoom-in") || "Zoom in",
    zoomOutTitle: container.getAttribute("data-zoom-out") || "Zoom out"
  }).addTo(map);
  var layer = window.L.tileLayer(tiles, {
    maxZoom: 18,
    attribution: container.getAttribute("data-attribution") || ""
  });
  var loaded = 0;
  var failed = 0;
  layer.on("tileload", function () { loaded += 1; });
  layer.on("tileerror", function () {
    failed += 1;
    if (failed >= 4 && loaded === 0) { giveUp(); }
  });
  layer.addTo(map);
  // Tiles that never answer (a blocked network) count as failure too.
  window.setTimeout(function () { if (loaded === 0) { giveUp(); } }, 8000);

  var placeIcon = window.L.divIcon({ className: "map-pin map-pin-place", html: "<span></span>", iconSize: [22, 22] });
  var eventIcon = window.L.divIcon({ className: "map-pin map-pin-event", html: "<span></span>", iconSize: [18, 18] });
  var bounds = [];
  points.forEach(function (point) {
    var marker = window.L.marker([point.lat, point.lon], {
      icon: point.kind === "place" ? placeIcon : eventIcon,
      title: point.title,
      alt: point.title,
      keyboard: true
    }).addTo(map);
    var box = document.createElement("div");
    var link = document.createElement("a");
    link.href = point.url;
    link.textContent = point.title;
    var detail = document.createElement("p");
    detail.textContent = point.detail;
    box.appendChild(link);
    box.appendChild(detail);
    if (point.events && (point.kind === "place" || point.events.length > 1)) {
      var list = document.createElement("ul");
      point.events.slice(0, 6).forEach(function (item) {
        var entry = document.createElement("li");
        var itemLink = document.createElement("a");
        itemLink.href = item.url;
        itemLink.textContent = item.title;
        entry.appendChild(itemLink);
        entry.appendChild(document.createTextNode(" — " + item.when));
        list.appendChild(entry);
      });
      box.appendChild(list);
    }
    marker.bindPopup(box);
    bounds.push([point.lat, point.lon]);
  });
  if (bounds.length > 1) {
    map.fitBounds(bounds, { padding: [30, 30], maxZoom: 15 });
  } else if (bounds.length === 1) {
    map.setView(bounds[0], 14);
  } else {
    map.setView([46.6, 2.4], 5);
  }
})();
