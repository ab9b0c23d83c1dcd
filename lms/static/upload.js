/* Video upload with a progress bar. Without JavaScript the form posts normally; the
 * server checks everything either way (size, type from magic bytes, duration). */
(function () {
  "use strict";
  var form = document.getElementById("video-upload");
  if (!form || !window.FormData || !window.XMLHttpRequest) {
    return;
  }
  var progress = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var errors = document.getElementById("upload-errors");
  var button = form.querySelector("button[type=submit]");
  var fileInput = form.querySelector("input[type=file]");
  var tokenInput = form.querySelector("input[name=csrf_token]");
  var busy = false;

  function showErrors(messages) {
    errors.textContent = "";
    messages.forEach(function (text) {
      var p = document.createElement("p");
      p.className = "flash flash-error";
      p.textContent = text;
      errors.appendChild(p);
    });
  }

  function done() {
    busy = false;
    button.disabled = false;
    progress.hidden = true;
    status.textContent = "";
  }

  form.addEventListener("submit", function (event) {
    var file = fileInput && fileInput.files && fileInput.files[0];
    if (!file) {
      return; // let the server name what is missing
    }
    event.preventDefault();
    if (busy) {
      return;
    }
    var maxBytes = parseInt(form.dataset.maxBytes, 10);
    if (maxBytes && file.size > maxBytes) {
      // Saves sending a file the server would refuse anyway; the server still checks.
      showErrors([form.dataset.msgTooLarge]);
      return;
    }
    busy = true;
    button.disabled = true;
    showErrors([]);
    progress.hidden = false;
    progress.value = 0;

    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    xhr.setRequestHeader("Accept", "application/json");
    if (tokenInput) {
      xhr.setRequestHeader("X-CSRFToken", tokenInput.value);
    }
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        var percent = Math.floor((e.loaded / e.total) * 100);
        progress.value = percent;
        status.textContent = percent + "%";
      }
    });
    xhr.upload.addEventListener("load", function () {
      progress.removeAttribute("value"); // indeterminate while the server checks the file
      status.textContent = form.dataset.msgChecking;
    });
    xhr.addEventListener("load", function () {
      var data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch (ignored) {
        data = null;
      }
      if (data && data.ok && data.redirect) {
        window.location.assign(data.redirect);
        return;
      }
      done();
      if (data && data.errors && data.errors.length) {
        showErrors(data.errors);
      } else if (xhr.status === 413) {
        showErrors([form.dataset.msgTooLarge]);
      } else {
        showErrors([form.dataset.msgFailed.replace("{status}", String(xhr.status))]);
      }
    });
    xhr.addEventListener("error", function () {
      done();
      showErrors([form.dataset.msgNetwork]);
    });
    xhr.send(new FormData(form));
  });
})();
