/* Inside the widget's frame: tell the embedding page (embed.js) how tall the list is. */
(function () {
  "use strict";
  if (window.parent === window) { return; }
  var send = function () {
    window.parent.postMessage({ hallesHeight: document.documentElement.scrollHeight }, "*");
  };
  window.addEventListener("load", send);
  window.addEventListener("resize", send);
  send();
})();
