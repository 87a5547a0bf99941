/* Studies list: refresh the rows every few seconds while a study is running or paused. */
"use strict";
(() => {
  const table = document.getElementById("studies");
  const body = document.getElementById("study-rows");
  if (!table || !body) return;
  const active = () => body.querySelector('tr[data-state="running"], tr[data-state="paused"]');
  if (!active()) return;
  hp.poller(async () => {
    const result = await hp.get(table.dataset.live);
    if (!result.ok) return true;
    if (body.innerHTML !== result.data.html) body.innerHTML = result.data.html;
    return result.data.active;
  }, 3000);
})();
