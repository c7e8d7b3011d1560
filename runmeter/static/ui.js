// runmeter ui: the page's one script. Every few seconds it asks the server for the page's live
// section (the same URL with ?fragment=live) and swaps it in when its digest changed, so new
// runs appear without a reload. Nothing else: links and forms are plain HTML.
"use strict";
(function () {
  const section = document.getElementById("live");
  const status = document.getElementById("live-status");
  if (!section) return;
  const every = 1000 * Number(section.dataset.live || 3);
  let busy = false;

  async function poll() {
    if (busy || document.hidden) return;
    busy = true;
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "live");
    try {
      const response = await fetch(url, { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const digest = response.headers.get("X-Digest");
      const html = await response.text();
      if (digest && digest !== section.dataset.digest) {
        section.innerHTML = html;
        section.dataset.digest = digest;
      }
      if (status) status.textContent = "live · " + new Date().toLocaleTimeString();
    } catch (err) {
      if (status) status.textContent = "live · waiting for the server";
    } finally {
      busy = false;
    }
  }

  window.setInterval(poll, every);
})();
