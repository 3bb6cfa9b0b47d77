/* Small progressive enhancements; every page works without this file. */
(function () {
  "use strict";

  // Filters start open on wide screens (a sidebar), closed on phones (a drawer).
  var filters = document.querySelector("details.filters");
  if (filters && !filters.hasAttribute("data-keep") && window.matchMedia("(min-width: 64rem)").matches) {
    filters.open = true;
  }

  // Copy buttons: copy the value of the input they point at.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target) { return; }
      var text = target.value || target.textContent;
      var done = function () {
        var status = document.getElementById(button.getAttribute("data-status"));
        if (status) { status.textContent = button.getAttribute("data-done") || "OK"; }
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () { target.select(); });
      } else if (target.select) {
        target.select();
        document.execCommand("copy");
        done();
      }
    });
  });

  // The system share sheet, where the browser has one.
  document.querySelectorAll("[data-share]").forEach(function (button) {
    if (!navigator.share) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.share({ title: button.getAttribute("data-title"), url: button.getAttribute("data-share") })
        .catch(function () { /* closed by the person: nothing to do */ });
    });
  });

  // Forms with parts that only apply to one choice (where an event happens, how it repeats).
  document.querySelectorAll("[data-show-when]").forEach(function (part) {
    var spec = part.getAttribute("data-show-when").split("=");
    var name = spec[0];
    var values = spec[1].split(",");
    var inputs = document.querySelectorAll('input[name="' + name + '"]');
    var update = function () {
      var chosen = document.querySelector('input[name="' + name + '"]:checked');
      part.hidden = !(chosen && values.indexOf(chosen.value) !== -1);
    };
    inputs.forEach(function (input) { input.addEventListener("change", update); });
    update();
  });

  // Confirm before destructive buttons.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
})();
