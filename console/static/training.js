// While a training run goes on, the models page shows its progress live: it asks the service every second and
// moves the progress bar and the stage; when the run ends it loads the page again to show the new version.
"use strict";
(function () {
  var box = document.getElementById("training");
  if (!box || box.getAttribute("data-running") !== "1") { return; }
  function poll() {
    fetch("/console/models/training.json", {credentials: "same-origin", cache: "no-store"})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (status) {
        if (!status) { return; }
        box.querySelector("progress").value = status.percent;
        box.querySelector(".percent").textContent = status.percent;
        box.querySelector(".stage").textContent = status.stage_zh;
        box.querySelector(".stage-en").textContent = status.stage_en;
        if (status.state !== "running") { window.location.reload(); }
      })
      .catch(function () { /* the next poll tries again */ });
  }
  setInterval(poll, 1000);
})();
