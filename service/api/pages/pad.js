// The digit pad: draw, drop, paste, pick or photograph a digit; the service's answer shown as a picture.
// Plain script, no build step, nothing from elsewhere. It uses the public API only (POST /predict?include=input,
// GET /models), so the service's limits, guards and metrics apply to it as to any client.
'use strict';

(() => {
  const UPLOAD_SIDE = 280; // px of the picture sent for a drawing, whatever the screen's pixel density
  const BRUSH = UPLOAD_SIDE / 14; // a marker: about two MNIST pixels once the service scales the ink to 20 px
  const LIVE_EVERY_MS = 150; // while a stroke goes on, ask at most this often
  const MAX_PICTURE_SIDE = 1024; // phone photos are scaled down first: the originals can pass the body cap
  const SENT_AS_IS = new Set(['image/png', 'image/jpeg']); // what the service reads; the browser re-encodes the rest
  const NETWORK_RETRY_S = 5; // the service unreachable: ask again this often while a drawing waits
  const HISTORY = 20; // clears and replaced drawings undo brings back
  const MAX_WAIT_S = 30; // a service without a model is asked again ever less often, up to this
  // A service that takes the request and never answers (stopped, a proxy that drops it) counts as unreachable; the
  // service itself answers within MNIST_REQUEST_TIMEOUT_S (5 s by default) or says 504.
  const REQUEST_TIMEOUT_MS = 10000;
  const MESSAGES = {
    no_digit: 'Nothing to read yet. Draw one digit, 0 to 9, large and in the middle.',
    // Also what the first stroke of a 4, 5 or 7 gets: it must read as "go on", not "start again".
    not_a_digit: "That doesn't look like a digit to the model yet. Keep drawing, or clear the pad and draw a single digit, 0 to 9, filling most of the box.",
    suspected_adversarial: 'This picture looks made to fool the model, so it was not read. Clear the pad and draw the digit by hand.',
    payload_too_large: 'That picture is too large to send. Choose a smaller one, or crop it to the digit.',
    image_too_large: 'That picture has too many pixels. Choose a smaller one, or crop it to the digit.',
    invalid_image: 'That file could not be read as a picture. Choose a PNG or JPEG picture.',
    unsupported_image_format: 'Only PNG and JPEG pictures can be read. Save it as PNG or JPEG, or take a screenshot of it, and try again.',
    multi_frame_image: 'Animated pictures cannot be read. Choose a still PNG or JPEG.',
    decode_timeout: 'That picture took too long to read. Choose a smaller or simpler one.',
    queue_full: 'The service is busy right now. Trying again in {s} s.',
    // Loading, or no version trained yet: asked again ever less often (MAX_WAIT_S), the drawing kept.
    model_not_ready: 'The model is not ready yet: it is loading, or none has been trained. Trying again in {s} s.',
    deadline_exceeded: 'The model took too long to answer. Draw again, or try again in a moment.',
    network: "Can't reach the service. Check your connection: your drawing is kept and sent again as soon as it answers.",
    // A picture the browser cannot show, sent once to learn why, when the service is busy, not ready or unreachable.
    picture_not_sent: 'That picture could not be checked just now: the service is busy or unreachable. Choose it again in a moment.',
  };
  const RETRIED = new Set(['queue_full', 'model_not_ready']);
  const FALLBACK = 'The service could not read this (HTTP {status}). Try again, or clear the pad and draw again.';

  const byId = (id) => document.getElementById(id);
  const pad = byId('pad');
  const ink = pad.getContext('2d');
  const view = {
    answer: byId('answer'),
    digit: byId('digit'),
    confidence: byId('confidence'),
    message: byId('message'),
    chart: byId('chart'),
    chartFigure: byId('chart-figure'),
    inputFigure: byId('input-figure'),
    modelInput: byId('model-input'),
    version: byId('version'),
    cardLink: byId('card-link'),
    announce: byId('announce'),
  };

  const state = {
    strokes: [], // finished strokes, each a list of [x, y] in 0..1 of the pad
    drawing: null, // the stroke under the pointer
    pointerId: null,
    picture: null, // {bitmap, lightInk, blob}: a picture dropped, pasted, chosen or photographed
    history: [], // {strokes, picture}: what each clear or chosen picture replaced, which undo brings back
    picks: 0, // pictures chosen so far: one still loading when another is chosen is dropped
    revision: 0, // bumped by every change of what is on the pad
    resetAt: 0, // revision of the last clear or undo: answers about anything older are stale
    shown: 0, // revision of the answer on screen
    inFlight: false, // at most one request at a time
    again: false, // the pad changed while a request was out: ask once it is back
    timer: 0,
    retryTimer: 0,
    strokeEnd: null, // {revision, at}: when the last stroke ended, to time its answer
    offline: false,
    refused: { code: '', revision: -1 }, // the refusal on screen, of which drawing
    waits: 0, // how many times in a row that refusal came back for that same drawing: its retries
  };

  // ---- drawing ---------------------------------------------------------------------------------

  function strokePath(g, points, side) {
    const [x0, y0] = points[0];
    g.beginPath();
    g.moveTo(x0 * side, y0 * side);
    if (points.length === 1) {
      g.lineTo(x0 * side + 0.01, y0 * side); // a dot: round caps make it a disc
    }
    // Through the midpoints with the samples as control points: a smooth line, as a marker leaves it.
    for (let i = 1; i < points.length - 1; i += 1) {
      const [x, y] = points[i];
      const [nx, ny] = points[i + 1];
      g.quadraticCurveTo(x * side, y * side, ((x + nx) / 2) * side, ((y + ny) / 2) * side);
    }
    if (points.length > 1) {
      const [xl, yl] = points[points.length - 1];
      g.lineTo(xl * side, yl * side);
    }
    g.stroke();
  }

  function drawPicture(g, bitmap, side) {
    const scale = Math.min(side / bitmap.width, side / bitmap.height);
    const w = bitmap.width * scale;
    const h = bitmap.height * scale;
    g.drawImage(bitmap, (side - w) / 2, (side - h) / 2, w, h);
  }

  function render(g, side) {
    g.fillStyle = '#fff';
    g.fillRect(0, 0, side, side);
    if (state.picture && state.picture.bitmap) drawPicture(g, state.picture.bitmap, side);
    // Ink on a picture is the picture's own polarity: dark strokes on dark paper would read as rubbing its ink out.
    g.strokeStyle = state.picture && state.picture.lightInk ? '#eee' : '#111';
    g.lineCap = 'round';
    g.lineJoin = 'round';
    g.lineWidth = (side * BRUSH) / UPLOAD_SIDE;
    for (const stroke of state.strokes) strokePath(g, stroke, side);
    if (state.drawing) strokePath(g, state.drawing, side);
  }

  let frame = 0;
  function repaint() {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      render(ink, pad.width);
    });
  }

  function fitPad() {
    // The backing store follows the laid-out size and the screen's density, so the ink stays sharp.
    const side = Math.max(1, Math.round(pad.getBoundingClientRect().width * (window.devicePixelRatio || 1)));
    if (pad.width !== side) {
      pad.width = side;
      pad.height = side;
    }
    render(ink, side);
  }

  function point(event) {
    // Not clamped to the pad: a stroke that leaves it and comes back is cut at the edge when painted, as drawn.
    // Clamped, every point outside landed on the border and drew ink there the hand never drew.
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) / box.width, (event.clientY - box.top) / box.height];
  }

  function isEmpty() {
    return !state.strokes.length && !state.drawing && !state.picture;
  }

  function changed() {
    state.revision += 1;
    clearTimeout(state.retryTimer);
  }

  function reset() {
    changed();
    state.resetAt = state.revision;
    state.strokeEnd = null;
    clearTimeout(state.timer);
    state.timer = 0;
    repaint();
    if (isEmpty()) showNothing();
    else askNow();
  }

  pad.addEventListener('pointerdown', (event) => {
    if (state.drawing || (event.pointerType === 'mouse' && event.button !== 0)) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    state.pointerId = event.pointerId;
    state.drawing = [point(event)];
    changed();
    repaint();
  });

  pad.addEventListener('pointermove', (event) => {
    if (event.pointerId !== state.pointerId || !state.drawing) return;
    const samples = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const sample of samples.length ? samples : [event]) state.drawing.push(point(sample));
    changed();
    repaint();
    askSoon();
  });

  function endStroke(event) {
    if (event.pointerId !== state.pointerId || !state.drawing) return;
    state.strokes.push(state.drawing);
    state.drawing = null;
    state.pointerId = null;
    repaint();
    state.strokeEnd = { revision: state.revision, at: performance.now() };
    askNow();
  }
  pad.addEventListener('pointerup', endStroke);
  pad.addEventListener('pointercancel', endStroke);

  function undo() {
    if (state.drawing) return;
    if (state.strokes.length) state.strokes.pop();
    else if (state.history.length) {
      // A clear or a chosen picture is undone too: Escape clears from anywhere on the page, a picture replaces the
      // drawing, and neither loses it for good.
      ({ strokes: state.strokes, picture: state.picture } = state.history.pop());
    } else if (state.picture) state.picture = null;
    else return;
    reset();
  }

  function keepForUndo() {
    if (!state.strokes.length && !state.picture) return;
    state.history.push({ strokes: state.strokes, picture: state.picture });
    state.history.splice(0, state.history.length - HISTORY); // the oldest go: pictures hold their pixels
  }

  function clearPad() {
    keepForUndo();
    state.strokes = [];
    state.drawing = null;
    state.pointerId = null;
    state.picture = null;
    reset();
  }

  byId('undo').addEventListener('click', undo);
  byId('clear').addEventListener('click', clearPad);
  document.addEventListener('keydown', (event) => {
    if ((event.ctrlKey || event.metaKey) && !event.shiftKey && !event.altKey && event.key.toLowerCase() === 'z') {
      event.preventDefault();
      undo();
    } else if (event.key === 'Escape') {
      // Anywhere on the page: the pad takes no focus from a pointer (its pointerdown is the drawing's).
      clearPad();
    }
  });

  // ---- pictures: picker, camera, drop, paste ------------------------------------------------

  function scaledCanvas(bitmap) {
    // The picture's pixels at most MAX_PICTURE_SIDE a side, drawn once: what is sent and what is looked at.
    const scale = Math.min(1, MAX_PICTURE_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement('canvas');
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext('2d', { willReadFrequently: true }).drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    return canvas;
  }

  function reencoded(canvas, scaled, type) {
    // A picture larger than MAX_PICTURE_SIDE goes scaled down to it; a small one in a format the service does not read
    // (WebP, GIF, BMP...) as a lossless PNG of the same pixels. Only a JPEG goes as JPEG: any other picture may be a
    // drawing on transparent paper, which JPEG, without transparency, would turn black, and black ink with it.
    const format = scaled && type === 'image/jpeg' ? ['image/jpeg', 0.92] : ['image/png'];
    return new Promise((resolve) => canvas.toBlob(resolve, ...format));
  }

  async function asTheServiceReadsIt(bitmap, canvas) {
    // -> {bitmap, lightInk}: the picture as the pad shows it, and whether strokes added over it are light (its paper
    // is dark). A drawing on transparent paper (what drawing apps export) is read by its transparency: whatever is
    // painted is ink, in any colour (service/inputs/imaging.py: the border mostly transparent, the alpha spanning
    // more than 63 levels). Shown on the pad's white paper as it is, white ink would be invisible, and a stroke added
    // over it would send the pad without it; so it is shown as what is read: dark ink where it is painted.
    // ``canvas`` is ``scaledCanvas(bitmap)``, already encoded if it is sent: it is painted over here.
    const g = canvas.getContext('2d', { willReadFrequently: true });
    const { width: w, height: h } = canvas;
    const data = g.getImageData(0, 0, w, h).data;
    let low = 255;
    let high = 0;
    for (let i = 3; i < data.length; i += 4) {
      low = Math.min(low, data[i]);
      high = Math.max(high, data[i]);
    }
    // The outermost rows and columns, corners twice, as the service takes them: their alpha, and their grey on the
    // pad's white paper (ITU-R 601, as the service's).
    const border = [];
    const paper = [];
    const edge = (x, y) => {
      const i = (y * w + x) * 4;
      const a = data[i + 3] / 255;
      border.push(data[i + 3]);
      paper.push((0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2]) * a + 255 * (1 - a));
    };
    for (let x = 0; x < w; x += 1) [0, h - 1].forEach((y) => edge(x, y));
    for (let y = 0; y < h; y += 1) [0, w - 1].forEach((x) => edge(x, y));
    if (!(median(border) < 127.5 && high - low > 63)) return { bitmap, lightInk: median(paper) < 127.5 };
    g.globalCompositeOperation = 'source-in'; // the picture's transparency kept, its colours made the pad's ink
    g.fillStyle = '#111';
    g.fillRect(0, 0, w, h);
    return { bitmap: await createImageBitmap(canvas), lightInk: false };
  }

  function median(values) {
    values.sort((a, b) => a - b);
    return (values[(values.length - 1) >> 1] + values[values.length >> 1]) / 2;
  }

  async function takePicture(file) {
    if (!file) return;
    state.picks += 1;
    const pick = state.picks;
    let bitmap = null;
    let blob = file;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      bitmap = null; // not a picture this browser reads: send it as it is and let the service say why
    }
    if (!bitmap) {
      // A file the browser cannot show replaces nothing: the drawing is kept and the refusal said. A PNG or JPEG goes
      // to the service, which says why (truncated, too many pixels...); of anything else, a picture in another
      // format (HEIC from a phone) is told to be saved as PNG or JPEG, a text file or a PDF that it is no picture.
      const outcome = SENT_AS_IS.has(file.type)
        ? await post(file)
        : { error: file.type.startsWith('image/') ? 'unsupported_image_format' : 'invalid_image' };
      if (pick !== state.picks) return;
      if (!outcome.answer) {
        // Said beside the answer about the drawing, which stays: the file is no part of it, and is not asked again.
        const later = RETRIED.has(outcome.error) || outcome.error === 'network';
        const words = MESSAGES[later ? 'picture_not_sent' : outcome.error];
        say(words || FALLBACK.replace('{status}', String(outcome.status)));
        return;
      }
    }
    const tooLarge = bitmap && Math.max(bitmap.width, bitmap.height) > MAX_PICTURE_SIDE;
    const canvas = bitmap && scaledCanvas(bitmap);
    if (bitmap && (tooLarge || !SENT_AS_IS.has(file.type))) {
      blob = (await reencoded(canvas, tooLarge, file.type)) || file;
    }
    const shown = bitmap ? await asTheServiceReadsIt(bitmap, canvas) : { bitmap: null, lightInk: false };
    if (pick !== state.picks) return; // another picture was chosen while this one loaded: the latest choice wins
    keepForUndo();
    state.strokes = [];
    state.drawing = null;
    state.picture = { ...shown, blob };
    reset();
  }

  for (const id of ['file', 'camera']) {
    byId(id).addEventListener('change', (event) => {
      const [file] = event.target.files;
      event.target.value = ''; // the same file chosen again is a new choice
      takePicture(file);
    });
  }
  const zone = byId('drop-zone');
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    takePicture(event.dataTransfer && event.dataTransfer.files[0]);
  });
  document.addEventListener('paste', (event) => {
    const items = event.clipboardData ? [...event.clipboardData.items] : [];
    const item = items.find((i) => i.kind === 'file' && i.type.startsWith('image/'));
    if (!item) return;
    event.preventDefault();
    takePicture(item.getAsFile());
  });

  // ---- asking the service ----------------------------------------------------------------------

  function askSoon() {
    if (!state.timer) state.timer = setTimeout(ask, LIVE_EVERY_MS);
  }

  function askNow() {
    clearTimeout(state.timer);
    state.timer = 0;
    ask();
  }

  function padBlob() {
    if (!state.strokes.length && !state.drawing) return state.picture ? state.picture.blob : null;
    const canvas = document.createElement('canvas');
    canvas.width = UPLOAD_SIDE;
    canvas.height = UPLOAD_SIDE;
    // In memory, not on the GPU (willReadFrequently): no read-back before the encoding.
    render(canvas.getContext('2d', { willReadFrequently: true }), UPLOAD_SIDE);
    // Encoded at once with toDataURL (1-3 ms here). toBlob and convertToBlob wait for the page to be idle, up
    // to a second when the pen keeps it busy: measured, a stroke's answer then came 1,000 ms late.
    const bytes = atob(canvas.toDataURL('image/png').split(',')[1]);
    const png = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i += 1) png[i] = bytes.charCodeAt(i);
    return new Blob([png], { type: 'image/png' });
  }

  function retryAfter(response) {
    const seconds = Number.parseInt(response.headers.get('Retry-After') || '', 10);
    return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 60) : 2;
  }

  async function post(blob) {
    const form = new FormData();
    form.append('file', blob, 'digit.png');
    let response;
    try {
      response = await fetch('/predict?include=input', {
        method: 'POST',
        body: form,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch {
      return { error: 'network' };
    }
    let body = null;
    if ((response.headers.get('Content-Type') || '').startsWith('application/json')) {
      try {
        body = await response.json();
      } catch {
        body = null;
      }
    }
    if (response.ok && body && Number.isInteger(body.digit)) return { answer: body };
    let code = body && body.error && typeof body.error.code === 'string' ? body.error.code : '';
    // A bare 503 comes from before the app (uvicorn past MNIST_LIMIT_CONCURRENCY, a proxy): busy, so retried too.
    if (!code && response.status === 503) code = 'queue_full';
    return { error: code, status: response.status, retryAfter: retryAfter(response) };
  }

  async function ask() {
    state.timer = 0;
    if (state.inFlight) {
      state.again = true;
      return;
    }
    state.inFlight = true;
    state.again = false;
    const revision = state.revision;
    let outcome = null;
    try {
      const blob = padBlob();
      if (blob) outcome = await post(blob);
    } finally {
      state.inFlight = false;
    }
    if (outcome) show(outcome, revision);
    if (state.again) ask();
  }

  window.addEventListener('online', () => {
    if (state.offline && !isEmpty()) askNow();
  });

  // ---- the answer ------------------------------------------------------------------------------

  // One decimal, rounded down: 0.9951 is "99.5 %", never a certainty the model did not state.
  const percent = (p) => (p >= 1 ? '100 %' : `${(Math.floor(1000 * Math.max(0, p)) / 10).toFixed(1)} %`);
  const bars = [];
  for (let d = 0; d < 10; d += 1) {
    const item = document.createElement('li');
    const label = document.createElement('span');
    label.className = 'label';
    label.textContent = String(d);
    const track = document.createElement('span');
    track.className = 'track';
    const fill = document.createElement('span');
    fill.className = 'fill';
    track.append(fill);
    const value = document.createElement('span');
    value.className = 'value';
    item.append(label, track, value);
    view.chart.append(item);
    bars.push({ item, fill, value });
  }

  function drawBars(probabilities) {
    const top = probabilities.indexOf(Math.max(...probabilities));
    probabilities.forEach((p, d) => {
      bars[d].fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`; // CSSOM: allowed under style-src 'self'
      bars[d].value.textContent = percent(p);
      bars[d].item.classList.toggle('top', d === top);
    });
    const text = probabilities.map((p, d) => `${d}: ${percent(p)}`).join(', ');
    view.chart.setAttribute('aria-label', `Probability of each digit: ${text}`);
  }

  function clearBars() {
    for (const bar of bars) {
      bar.fill.style.width = '0%';
      bar.value.textContent = '';
      bar.item.classList.remove('top');
    }
    view.chart.setAttribute('aria-label', 'No probabilities yet');
  }

  function drawModelInput(rows) {
    const side = view.modelInput.width;
    const valid = Array.isArray(rows) && rows.length === side && rows.every((r) => Array.isArray(r) && r.length === side);
    view.inputFigure.hidden = !valid;
    if (!valid) return;
    const g = view.modelInput.getContext('2d');
    const pixels = g.createImageData(side, side);
    rows.forEach((row, y) =>
      row.forEach((v, x) => {
        const grey = Math.max(0, Math.min(255, Number(v) || 0));
        pixels.data.set([grey, grey, grey, 255], (y * side + x) * 4);
      }),
    );
    g.putImageData(pixels, 0, 0);
  }

  function showVersion(version) {
    if (!Number.isInteger(version)) return;
    view.version.textContent = String(version);
    view.cardLink.href = `/models/${version}/card`;
  }

  function announce(text) {
    // Only settled answers, each once: every live guess while the pen moves, or the same refusal at each retry,
    // would drown a screen reader.
    if (!state.drawing && !state.inFlight && view.announce.textContent !== text) view.announce.textContent = text;
  }

  function say(text, aloud = true) {
    view.message.textContent = text;
    if (aloud) announce(text);
  }

  function showAnswer(answer) {
    state.refused = { code: '', revision: -1 };
    view.digit.textContent = String(answer.digit);
    view.confidence.textContent = `${percent(answer.confidence)} sure`;
    view.message.textContent = '';
    const withBars = Array.isArray(answer.probabilities) && answer.probabilities.length === bars.length;
    view.chartFigure.hidden = !withBars; // MNIST_RETURN_PROBABILITIES=false: the digit and confidence only
    if (withBars) drawBars(answer.probabilities);
    drawModelInput(answer.input);
    showVersion(answer.model_version);
    announce(`The model reads ${answer.digit}, ${percent(answer.confidence)} sure.`);
  }

  function showRefusal(outcome, revision) {
    view.digit.textContent = '';
    view.confidence.textContent = '';
    clearBars();
    view.inputFigure.hidden = true;
    let text = MESSAGES[outcome.error] || FALLBACK.replace('{status}', String(outcome.status));
    clearTimeout(state.retryTimer); // one retry pending at most, whatever answers arrived since
    const again = outcome.error === state.refused.code && revision === state.refused.revision;
    state.waits = again ? state.waits + 1 : 0;
    state.refused = { code: outcome.error, revision };
    if (RETRIED.has(outcome.error)) {
      // Retry-After honoured; a model that is not there is asked for ever less often, each open tab alike.
      const backoff = outcome.error === 'model_not_ready' ? 2 ** state.waits : 1;
      const wait = Math.min(MAX_WAIT_S, outcome.retryAfter * backoff);
      text = text.replace('{s}', String(wait));
      state.retryTimer = setTimeout(askNow, wait * 1000);
    } else if (outcome.error === 'network') {
      state.retryTimer = setTimeout(askNow, NETWORK_RETRY_S * 1000); // a server back up, the browser never offline
    }
    say(text, state.waits === 0); // the same refusal again, retried, is shown but not announced again
  }

  function showNothing() {
    view.digit.textContent = '';
    view.confidence.textContent = '';
    view.message.textContent = '';
    clearBars();
    view.chartFigure.hidden = false;
    view.inputFigure.hidden = true;
    view.announce.textContent = 'The pad is empty.';
  }

  function show(outcome, revision) {
    // Stale: about a drawing since cleared or undone, or older than the one on screen (a retry of the same is not).
    if (revision < state.resetAt || revision < state.shown) return;
    state.shown = revision;
    state.offline = outcome.error === 'network';
    if (outcome.answer) showAnswer(outcome.answer);
    else showRefusal(outcome, revision);
    const end = state.strokeEnd;
    if (end && revision >= end.revision) {
      state.strokeEnd = null;
      // Timed to the frame that paints the answer: what a person sees, not when the script got it.
      requestAnimationFrame(() => {
        view.answer.dataset.strokeToShownMs = (performance.now() - end.at).toFixed(1);
      });
    }
  }

  // ---- start -----------------------------------------------------------------------------------

  window.addEventListener('resize', fitPad);
  fitPad();
  clearBars();
  // The served version, for the model card link; the pad paints and works before (and without) it.
  fetch('/models')
    .then((response) => (response.ok ? response.json() : null))
    .then((status) => status && showVersion(status.model_version))
    .catch(() => {});
})();
