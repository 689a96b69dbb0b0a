// cliplens web pages: the latent page's patch maps, and the explain page's steering sliders.
// Server-rendered HTML only comes from our own fragment route; API answers are written as text.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const maps = document.getElementById("patch-maps");
  if (maps) loadPatchMaps(maps);
  const steering = document.getElementById("steering");
  if (steering) setUpSteering(steering);
});

async function errorOf(response) {
  try {
    return (await response.json()).error || response.statusText;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadPatchMaps(element) {
  const response = await fetch(element.dataset.src, { credentials: "same-origin" });
  if (!response.ok) {
    element.textContent = `Patch maps unavailable: ${response.status} ${response.statusText}`;
    return;
  }
  element.innerHTML = await response.text(); // the server's own escaped fragment
  element.dataset.loaded = "true";
}

function setUpSteering(section) {
  const sliders = Array.from(section.querySelectorAll("input.steer"));
  const body = section.querySelector("#steer-table tbody");
  const error = section.querySelector("#steer-error");
  const upload = section.dataset.upload; // the id of the <img> holding an uploaded image's data: URI
  const image = upload ? document.getElementById(upload).getAttribute("src") : "";
  let latest = 0;
  let timer = null;

  async function update() {
    const sequence = ++latest;
    const edits = Object.fromEntries(sliders.map((s) => [s.dataset.latent, Number(s.value)]));
    const request = {
      sae_id: section.dataset.sae,
      key: section.dataset.key,
      data: image ? image.slice(image.indexOf(",") + 1) : "",
      edits: edits,
      class_names: JSON.parse(section.dataset.classes),
    };
    const response = await fetch(section.dataset.url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    if (sequence !== latest) return; // a newer slider position is on its way
    if (!response.ok) {
      error.textContent = `Steering failed: ${await errorOf(response)}`;
      error.hidden = false;
      return;
    }
    error.hidden = true;
    const answer = await response.json();
    body.replaceChildren(
      ...answer.classes.map((c) => {
        const row = document.createElement("tr");
        for (const text of [c.name, c.before.toFixed(4), c.after.toFixed(4)]) {
          const cell = document.createElement("td");
          cell.textContent = text;
          row.appendChild(cell);
        }
        return row;
      }),
    );
    section.dataset.updates = String(Number(section.dataset.updates || 0) + 1);
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(update, 150);
  }

  for (const slider of sliders) {
    slider.addEventListener("input", () => {
      slider.nextElementSibling.textContent = Number(slider.value).toFixed(3);
      schedule();
    });
  }
  update();
}
