// Blind pairwise rating: fetch a pair, show it, post the vote, repeat.
(function () {
  "use strict";
  var rater = document.getElementById("rater");
  var status = document.getElementById("status");
  var current = null, shownAt = 0, busy = false;
  rater.value = localStorage.getItem("animagine-batch-rater") || "";

  function say(text, error) {
    status.textContent = text;
    status.className = error ? "error" : "";
  }

  function load() {
    var name = rater.value.trim();
    if (!name) { say("enter your name first", true); rater.focus(); return; }
    localStorage.setItem("animagine-batch-rater", name);
    busy = true;
    fetch("/api/next?rater=" + encodeURIComponent(name)).then(function (r) {
      return r.json().then(function (body) { if (!r.ok) throw new Error(body.error); return body; });
    }).then(function (pair) {
      current = pair;
      var pending = 2;
      function shown() {
        pending -= 1;
        if (pending === 0) {
          shownAt = performance.now(); busy = false;
          document.body.dataset.token = pair.token;
          say("which image is better?");
        }
      }
      ["left", "right"].forEach(function (side) {
        var img = document.getElementById(side);
        img.onload = shown;
        img.onerror = function () { say("an image failed to load", true); shown(); };
        img.src = pair[side];
      });
      document.getElementById("prompt").textContent = pair.prompt ? "prompt: " + pair.prompt : "";
      document.getElementById("count").textContent = pair.votes;
      document.getElementById("pair").hidden = false;
      document.getElementById("buttons").hidden = false;
    }).catch(function (e) { busy = false; say(e.message, true); });
  }

  function vote(choice) {
    if (!current || busy) return;
    busy = true;
    var body = {token: current.token, choice: choice, rater: rater.value.trim(),
                shown_ms: Math.round(performance.now() - shownAt)};
    fetch("/api/vote", {method: "POST", headers: {"Content-Type": "application/json"},
                        body: JSON.stringify(body)}).then(function (r) {
      return r.json().then(function (b) { if (!r.ok && r.status !== 409) throw new Error(b.error); return b; });
    }).then(function (b) {
      if (b.saved) {
        document.getElementById("count").textContent = b.votes;
        document.body.dataset.votes = b.votes;
      }
      load();
    }).catch(function (e) { busy = false; say("not saved: " + e.message, true); });
  }

  document.getElementById("start").addEventListener("click", load);
  rater.addEventListener("keydown", function (e) { if (e.key === "Enter") load(); });
  Array.prototype.forEach.call(document.querySelectorAll("nav button"), function (b) {
    b.addEventListener("click", function () { vote(b.dataset.choice); });
  });
  document.addEventListener("keydown", function (e) {
    if (e.target === rater) return;
    var keys = {"1": "left", "ArrowLeft": "left", "2": "right", "ArrowRight": "right",
                "t": "tie", "s": "skip"};
    if (keys[e.key]) { e.preventDefault(); vote(keys[e.key]); }
  });
})();
