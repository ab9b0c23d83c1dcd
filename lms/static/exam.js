/* Exam attempt page (plain JS, no inline script; CSP script-src 'self').
 *
 * The server is the clock and the judge: it fixed the deadline when the attempt started,
 * refuses answers after it (plus a short grace) and scores what it saved. This script
 * only makes the page pleasant: it saves each answer as soon as it is chosen, shows a
 * countdown (corrected for the difference between this device's clock and the server's)
 * and submits the form when the time is up. Without it the form still posts every
 * answer on submit. Config comes from data- attributes on #exam-form.
 */
(function () {
  "use strict";

  var form = document.getElementById("exam-form");
  if (!form) { return; }
  var cfg = form.dataset;
  var countdown = document.getElementById("exam-countdown");
  var status = document.getElementById("exam-status");
  var tokenInput = form.querySelector("input[name=csrf_token]");
  var csrf = tokenInput ? tokenInput.value : "";

  var deadline = Date.parse(cfg.deadline);
  var skew = Date.parse(cfg.now) - Date.now();  // server time minus this device's time
  var submitting = false;
  var timer = null;

  function say(text, state) {
    if (!status) { return; }
    status.textContent = text || "";
    status.setAttribute("data-state", state || "");
  }

  function secondsLeft() {
    return Math.max(0, Math.floor((deadline - (Date.now() + skew)) / 1000));
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function submitNow(message) {
    if (submitting) { return; }
    submitting = true;
    if (timer) { window.clearInterval(timer); }
    say(message, "closed");
    form.submit();
  }

  function tick() {
    var left = secondsLeft();
    if (countdown) { countdown.textContent = Math.floor(left / 60) + ":" + pad(left % 60); }
    if (left <= 0) { submitNow(cfg.msgTimeup); }
  }

  function choicesOf(name) {
    var values = [];
    var inputs = form.querySelectorAll("input[name='" + name + "']");
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].checked) { values.push(inputs[i].value); }
    }
    return values;
  }

  function save(input) {
    var position = input.name.slice(1);
    var body = new FormData();
    body.append("csrf_token", csrf);
    body.append("position", position);
    choicesOf(input.name).forEach(function (value) { body.append("choice", value); });
    say(cfg.msgSaving, "saving");
    fetch(cfg.saveUrl, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, "Accept": "application/json" }
    }).then(function (response) {
      if (response.status === 409) {
        submitNow(cfg.msgClosed);
        return null;
      }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(function (data) {
      if (data) { say(cfg.msgSaved, "saved"); }
    }).catch(function () {
      if (!submitting) { say(cfg.msgError, "error"); }
    });
  }

  form.addEventListener("change", function (event) {
    var input = event.target;
    if (submitting || !input || !/^q\d+$/.test(input.name || "")) { return; }
    save(input);
  });
  form.addEventListener("submit", function () {
    submitting = true;
    if (timer) { window.clearInterval(timer); }
  });

  tick();
  timer = window.setInterval(tick, 1000);
})();
