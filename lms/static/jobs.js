/* A background job's page: ask the server for the job's progress every second and move
 * the bar; when the job has finished, reload the page (it then shows the download or
 * the error). Without JavaScript the page refreshes itself instead (<noscript>). */
(function () {
  "use strict";
  var box = document.querySelector("[data-job-status]");
  if (!box || !window.fetch || box.getAttribute("data-finished") === "true") {
    return;
  }
  var url = box.getAttribute("data-job-status");
  var bar = document.getElementById("job-progress");
  var percent = document.getElementById("job-percent");
  var label = document.getElementById("job-label");
  var lastStatus = box.getAttribute("data-status");

  function show(job) {
    if (bar) {
      bar.max = job.total || 1;
      bar.value = job.status === "done" ? (job.total || 1) : job.done;
      bar.textContent = job.percent + " %";
    }
    if (percent) {
      percent.textContent = job.percent + " %";
    }
    if (label) {
      label.textContent = job.label;
    }
  }

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (job) {
        show(job);
        if (job.finished || (job.status !== lastStatus && job.status === "queued")) {
          window.location.reload();
          return;
        }
        lastStatus = job.status;
        window.setTimeout(poll, 1000);
      })
      .catch(function () {
        window.setTimeout(poll, 3000);
      });
  }

  window.setTimeout(poll, 1000);
}());
