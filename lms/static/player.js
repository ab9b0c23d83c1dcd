/* Lesson player tracker (plain JS, no inline script; CSP script-src 'self').
 *
 * The server decides what counts: it issues the playback session, judges every heartbeat
 * on its own clock and credits only plausible progress. This script only reports the
 * position, keeps the honest learner from skipping ahead (snap back) or playing faster
 * than the course allows, resumes where they stopped, and shows the server's verdict.
 * Config comes from data- attributes on #lesson-video.
 */
(function () {
  "use strict";

  var video = document.getElementById("lesson-video");
  if (!video) { return; }
  var cfg = video.dataset;
  var message = document.getElementById("player-message");
  var progressBox = document.getElementById("watch-progress");
  var completedBadge = document.getElementById("watch-completed");

  var token = null;
  var seq = 0;
  var furthest = 0;        // furthest point the learner may seek to (watched)
  var lastTime = 0;        // last position seen while playing normally
  var maxRate = 1;
  var intervalMs = 5000;
  var timer = null;
  var dead = false;        // superseded or locked: stop reporting
  var snapping = false;

  function say(text) { if (message) { message.textContent = text || ""; } }

  function showProgress(data) {
    if (!progressBox) { return; }
    var pct = Math.max(0, Math.min(100, Math.floor((data.coverage || 0) * 100)));
    if (data.completed) { pct = 100; }
    var bar = progressBox.querySelector("progress");
    var value = progressBox.querySelector(".progress-value");
    if (bar) { bar.value = pct; }
    if (value) { value.textContent = pct + "%"; }
    if (data.completed) {
      progressBox.setAttribute("data-state", "completed");
      if (completedBadge) { completedBadge.classList.remove("hidden"); }
    }
  }

  function onVerdict(data) {
    if (!data) { return; }
    if (typeof data.furthest === "number" && data.furthest > furthest) { furthest = data.furthest; }
    if (data.rejected === "superseded") {
      dead = true;
      stopTimer();
      video.pause();
      say(cfg.msgSuperseded);
      return;
    }
    showProgress(data);
  }

  function beat(event) {
    if (!token || dead) { return; }
    seq += 1;
    var body = new URLSearchParams();
    body.set("session", token);
    body.set("seq", String(seq));
    body.set("position", video.currentTime.toFixed(3));
    body.set("event", event);
    body.set("csrf_token", cfg.csrf);
    if (event === "hide" && navigator.sendBeacon) {
      // The page may be going away: a beacon survives it and still carries the CSRF token.
      navigator.sendBeacon(cfg.beatUrl, body);
      return;
    }
    fetch(cfg.beatUrl, {
      method: "POST", body: body, credentials: "same-origin", keepalive: true,
      headers: { "Accept": "application/json" }
    }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(onVerdict).catch(function () { say(cfg.msgError); });
  }

  function startTimer() {
    if (timer === null) { timer = window.setInterval(function () { beat("tick"); }, intervalMs); }
  }
  function stopTimer() {
    if (timer !== null) { window.clearInterval(timer); timer = null; }
  }

  function clampRate() {
    if (video.playbackRate > maxRate) {
      video.playbackRate = maxRate;
      say((cfg.msgRate || "").replace("{rate}", String(maxRate)));
    }
    if (video.defaultPlaybackRate > maxRate) { video.defaultPlaybackRate = maxRate; }
  }

  function bind() {
    video.addEventListener("timeupdate", function () {
      var t = video.currentTime;
      if (!video.seeking && !snapping && t >= lastTime && t - lastTime <= 1.5 * Math.max(1, maxRate)) {
        if (t > furthest) { furthest = t; }
      }
      if (!video.seeking) { lastTime = t; }
    });
    video.addEventListener("seeking", function () {
      if (video.currentTime > furthest + 0.5) {
        snapping = true;
        video.currentTime = furthest;
        say(cfg.msgSnap);
      }
    });
    video.addEventListener("seeked", function () {
      lastTime = video.currentTime;
      if (snapping && video.currentTime <= furthest + 0.5) { snapping = false; }
      beat("seeked");
    });
    video.addEventListener("ratechange", clampRate);
    video.addEventListener("play", function () { clampRate(); beat("play"); startTimer(); });
    video.addEventListener("pause", function () { stopTimer(); beat("pause"); });
    video.addEventListener("ended", function () { stopTimer(); beat("ended"); });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") { beat("hide"); }
    });
    window.addEventListener("pagehide", function () { beat("hide"); });
  }

  function resumeAt(position) {
    var go = function () {
      if (position > 0 && position < (video.duration || Infinity)) {
        lastTime = position;
        video.currentTime = position;
      }
    };
    if (video.readyState >= 1) { go(); } else { video.addEventListener("loadedmetadata", go, { once: true }); }
  }

  // Session starts are spaced a few seconds apart by the server: wait and ask again.
  function startSession() {
  fetch(cfg.sessionUrl, {
    method: "POST", credentials: "same-origin",
    headers: { "Accept": "application/json", "X-CSRFToken": cfg.csrf }
  }).then(function (r) {
    if (r.status === 429) {
      var wait = parseFloat(r.headers.get("Retry-After") || "3");
      setTimeout(startSession, Math.max(1, wait) * 1000);
      throw new Error("retry");
    }
    if (r.status === 403) { dead = true; say(cfg.msgLocked); throw new Error("locked"); }
    if (!r.ok) { throw new Error("HTTP " + r.status); }
    return r.json();
  }).then(function (s) {
    token = s.session;
    furthest = s.furthest || 0;
    maxRate = s.max_rate || 1;
    intervalMs = Math.max(1, s.heartbeat || 5) * 1000;
    clampRate();
    showProgress(s);
    bind();
    resumeAt(Math.min(s.resume || 0, furthest));
    video.setAttribute("data-ready", "1");
    if (!video.paused) { beat("play"); startTimer(); }
  }).catch(function (e) { if (!dead && e.message !== "retry") { say(cfg.msgError); } });
  }
  startSession();
}());
