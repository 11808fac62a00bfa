/* MIKU-PAL run report: the utterance browser. Plain JavaScript, no dependencies, works from file://.
 *
 * data/index.js calls MIKU.setIndex(index) with the facets and one filter column entry per utterance;
 * data/chunk-NNNN.js files call MIKU.addChunk(N, rows) and are loaded as <script> elements when a page needs
 * them (Chromium refuses fetch() of local files). Text from the run is only ever set with textContent.
 */
(function () {
  "use strict";

  var M = (window.MIKU = window.MIKU || {});
  var chunks = {};
  var waiting = {};
  var index = null;
  var state = { label: "", video: "", speaker: "", minConf: null, text: "", page: 0 };
  var matches = [];
  var renderToken = 0;

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pad4(n) { return ("000" + n).slice(-4); }

  function fmt(x, digits) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }

  M.addChunk = function (n, rows) {
    if (n === 1) performance.mark("miku-chunk-1");
    chunks[n] = rows;
    if (waiting[n]) { waiting[n].resolve(rows); }
  };

  function loadChunk(n) {
    if (chunks[n]) return Promise.resolve(chunks[n]);
    if (waiting[n]) return waiting[n].promise;
    var entry = {};
    entry.promise = new Promise(function (resolve, reject) {
      entry.resolve = resolve;
      var script = document.createElement("script");
      script.src = "data/chunk-" + pad4(n) + ".js";
      script.onload = function () {
        if (!chunks[n]) { delete waiting[n]; reject(new Error(script.src + " did not define its rows")); }
      };
      script.onerror = function () {
        delete waiting[n];
        reject(new Error("could not load " + script.src + " (is the data folder next to index.html?)"));
      };
      document.body.appendChild(script);
    });
    waiting[n] = entry;
    return entry.promise;
  }

  function chunkOf(rowNumber) { return Math.floor(rowNumber / index.chunk_size) + 1; }

  function rowAt(rowNumber) {
    return chunks[chunkOf(rowNumber)][rowNumber % index.chunk_size];
  }

  function loadAll() {
    var all = [];
    for (var n = 1; n <= index.chunks; n++) all.push(loadChunk(n));
    return Promise.all(all);
  }

  /* Rows (numbers) that pass the filters; transcript search needs every chunk, the others only the index. */
  function filter() {
    var label = state.label === "" ? null : Number(state.label);
    var video = state.video === "" ? null : Number(state.video);
    var speaker = state.speaker === "" ? null : Number(state.speaker);
    var minConf = state.minConf;
    var words = state.text.toLowerCase().split(/\s+/).filter(function (w) { return w.length > 0; });
    var out = [];
    for (var i = 0; i < index.total; i++) {
      if (label !== null && index.col_label[i] !== label) continue;
      if (video !== null && index.col_video[i] !== video) continue;
      if (speaker !== null && index.col_speaker[i] !== speaker) continue;
      if (minConf !== null) {
        var c = index.col_confidence[i];
        if (c === null || c < minConf) continue;
      }
      if (words.length) {
        var text = (rowAt(i).text || "").toLowerCase();
        var ok = true;
        for (var w = 0; w < words.length; w++) { if (text.indexOf(words[w]) < 0) { ok = false; break; } }
        if (!ok) continue;
      }
      out.push(i);
    }
    return out;
  }

  function placeholder(message) { return el("div", "placeholder", message); }

  function mediaElement(tag, src, missing, absentText) {
    if (!src) return placeholder(missing || absentText);
    var node = document.createElement(tag);
    node.controls = true;
    node.preload = "metadata";
    node.src = src;
    node.addEventListener("error", function () {
      if (node.parentNode) node.parentNode.replaceChild(placeholder(tag + " could not be played: " + src), node);
    });
    return node;
  }

  function kv(list, key, value) {
    if (value === null || value === undefined || value === "") return;
    var item = el("span", "kv");
    item.appendChild(el("span", "k", key));
    item.appendChild(el("span", "v", value));
    list.appendChild(item);
  }

  function card(r) {
    var art = el("article", "utt");
    art.setAttribute("data-id", r.id);
    var media = el("div", "media");
    media.appendChild(mediaElement("video", r.clip, r.clip_missing, r.face ? "no face clip" : "no face found"));
    art.appendChild(media);

    var body = el("div", "body");
    var head = el("div", "head");
    head.appendChild(el("span", "uid", r.id));
    head.appendChild(el("span", "meta", (r.source || r.video) + " · " + fmt(r.start, 2) + "–" + fmt(r.end, 2) + " s" +
      (r.split ? " · " + r.split : "")));
    body.appendChild(head);

    var lab = el("div", "label");
    if (r.label) {
      var chip = el("span", "chip", r.label);
      chip.style.background = index.colors[r.label] || "#9e9e9e";
      lab.appendChild(chip);
    } else {
      lab.appendChild(el("span", "chip none", "no emotion"));
    }
    kv(lab, "intensity", r.intensity === null ? null : fmt(r.intensity, 2));
    kv(lab, "confidence", r.confidence === null ? null : fmt(r.confidence, 2));
    kv(lab, "votes", r.votes ? r.votes.join(", ") : null);
    body.appendChild(lab);

    body.appendChild(el("p", "text", r.text === null ? "(no transcript)" : r.text));
    body.appendChild(mediaElement("audio", r.audio, r.audio_missing, "no audio"));
    if (r.rationale) body.appendChild(el("p", "rationale", r.rationale));

    var more = el("div", "scores");
    kv(more, "speaker", r.speaker ? r.speaker + (r.speaker_similarity !== null ? " (sim " + fmt(r.speaker_similarity, 2) + ")" : "") : null);
    kv(more, "ASD", r.asd_score === null ? null : fmt(r.asd_score, 2));
    if (r.quality) {
      Object.keys(r.quality).forEach(function (k) { kv(more, k.replace("dnsmos_", "DNSMOS "), fmt(r.quality[k], 2)); });
    }
    if (r.scores) {
      var top = Object.keys(r.scores).sort(function (a, b) { return r.scores[b] - r.scores[a]; }).slice(0, 3);
      kv(more, "scores", top.map(function (k) { return k + " " + fmt(r.scores[k], 2); }).join(", "));
    }
    kv(more, "annotator", r.annotator ? r.annotator + (r.prompt_version ? " / " + r.prompt_version : "") : null);
    kv(more, "language", r.language);
    body.appendChild(more);
    art.appendChild(body);
    return art;
  }

  function pages() { return Math.max(1, Math.ceil(matches.length / index.page_size)); }

  function showPager() {
    var text = "page " + (state.page + 1) + " of " + pages();
    $("page").textContent = text;
    $("page2").textContent = text;
    var count = $("count");
    count.textContent = matches.length.toLocaleString("en") + " of " + index.total.toLocaleString("en") + " utterances";
    count.setAttribute("data-count", String(matches.length));
    count.setAttribute("data-total", String(index.total));
    ["prev", "prev2"].forEach(function (id) { $(id).disabled = state.page <= 0; });
    ["next", "next2"].forEach(function (id) { $(id).disabled = state.page >= pages() - 1; });
  }

  function showError(err) {
    var rows = $("rows");
    rows.textContent = "";
    rows.appendChild(el("p", "status incomplete", String(err && err.message ? err.message : err)));
    rows.setAttribute("data-ready", "error");
  }

  function renderPage() {
    var token = ++renderToken;
    var start = state.page * index.page_size;
    var slice = matches.slice(start, start + index.page_size);
    var needed = {};
    slice.forEach(function (i) { needed[chunkOf(i)] = true; });
    var rows = $("rows");
    rows.setAttribute("data-ready", "loading");
    showPager();
    return Promise.all(Object.keys(needed).map(function (n) { return loadChunk(Number(n)); })).then(function () {
      if (token !== renderToken) return;
      var frag = document.createDocumentFragment();
      slice.forEach(function (i) { frag.appendChild(card(rowAt(i))); });
      if (!slice.length) frag.appendChild(el("p", "empty", "No utterance matches these filters."));
      rows.textContent = "";
      rows.appendChild(frag);
      rows.setAttribute("data-ready", "yes");
      if (!performance.getEntriesByName("miku-first-page").length) {
        performance.mark("miku-first-page");  // in the DOM; the next frame after it has been painted
        requestAnimationFrame(function () { setTimeout(function () { performance.mark("miku-first-paint"); }, 0); });
      }
    }, showError);
  }

  function refilter() {
    state.page = 0;
    var ready = state.text ? loadAll() : Promise.resolve();
    $("rows").setAttribute("data-ready", "loading");
    return ready.then(function () { matches = filter(); return renderPage(); }, showError);
  }

  function fillSelect(select, names, counts) {
    names.forEach(function (name, i) {
      var option = el("option", null, counts ? name + " (" + counts[i] + ")" : name);
      option.value = String(i);
      select.appendChild(option);
    });
  }

  function start() {
    fillSelect($("f-label"), index.labels, index.label_counts);
    fillSelect($("f-video"), index.videos);
    fillSelect($("f-speaker"), index.speakers);
    if (!index.speakers.length) $("f-speaker").disabled = true;
    if (!index.col_confidence.some(function (c) { return c !== null; })) $("f-conf").disabled = true;
    $("f-label").addEventListener("change", function (e) { state.label = e.target.value; refilter(); });
    $("f-video").addEventListener("change", function (e) { state.video = e.target.value; refilter(); });
    $("f-speaker").addEventListener("change", function (e) { state.speaker = e.target.value; refilter(); });
    $("f-conf").addEventListener("input", function (e) {
      var v = parseFloat(e.target.value);
      state.minConf = isNaN(v) ? null : v;
      refilter();
    });
    var timer = null;
    $("f-text").addEventListener("input", function (e) {
      clearTimeout(timer);
      timer = setTimeout(function () { state.text = e.target.value.trim(); refilter(); }, 200);
    });
    $("f-reset").addEventListener("click", function () {
      ["f-label", "f-video", "f-speaker"].forEach(function (id) { $(id).value = ""; });
      $("f-conf").value = "";
      $("f-text").value = "";
      state = { label: "", video: "", speaker: "", minConf: null, text: "", page: 0 };
      refilter();
    });
    function go(delta) {
      return function () {
        var next = Math.min(pages() - 1, Math.max(0, state.page + delta));
        if (next !== state.page) { state.page = next; renderPage(); }
      };
    }
    ["prev", "prev2"].forEach(function (id) { $(id).addEventListener("click", go(-1)); });
    ["next", "next2"].forEach(function (id) { $(id).addEventListener("click", go(1)); });
    refilter();
  }

  M.setIndex = function (value) {
    performance.mark("miku-index");
    index = value;
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
    else start();
  };
})();
