// rxledger pharmacist's page: plain JavaScript against /graphql and /scan, no build step.
//
// Plain words on the main line, codes on the details line. A pack this pharmacy has just
// dispensed shows a neutral "Supplied" state, not an alarm. Dispensing takes a confirmation.
// Signed-in callers see place and organization names where the registry lets them.
'use strict';

const $ = (id) => document.getElementById(id);
let current = null; // the code last verified
let me = null;      // { orgId, role } when signed in
let names = { orgs: {}, sites: {} }; // registry names the caller may see
let witnessing = null; // { witnessQuorum, witnessVerifierKeys, ed25519VerifierKey }: what evidence must carry
let rendered = 0;      // verdicts rendered, so a late check never writes over a newer one

const VERIFICATION = `verdict dispensable reasons { code severity message evidence }
  product { gtin serial lot expiry tradeItem { productName strength dosageForm netContent
  marketingAuthorisationHolder imageUrl } } status evidence { index leafHash treeSize proof }
  checkpointSize checkpointNote cosignedCheckpoint { size note }
  timeline { index eventTime eventType action bizStep disposition inherited }
  completeness { mapEntry { index dataBase64 proof }
    identifiers { identifier entries { index leafHash } siblings leaf { key count head } } }`;
const VERIFY = `query($code: String!) { verify(code: $code) { ${VERIFICATION} } }`;
const NO_PRODUCT_DATA = 'No product information registered for this GTIN.';

const HEADLINES = {
  AUTHENTIC: 'Genuine pack', NOT_IN_YOUR_CUSTODY: 'Genuine pack, not shipped to you',
  UNKNOWN_PRODUCT: 'Unknown product', UNKNOWN_SERIAL: 'Unknown serial number: possible falsified pack',
  BATCH_MISMATCH: 'Batch does not match: possible falsified pack',
  EXPIRY_MISMATCH: 'Expiry date does not match: possible falsified pack', EXPIRED: 'Expired',
  ALREADY_DISPENSED: 'Already dispensed', RECALLED: 'Batch recalled', STOLEN: 'Reported stolen',
  QUARANTINED: 'Quarantined: keep it apart',
  DESTROYED: 'Recorded as destroyed', DECOMMISSIONED: 'Taken off the market',
  NO_SERIAL: 'Cannot be verified: no serial number',
};
const SEVERITY_WORDS = { ALERT: 'Alert', BLOCKED: 'Stop', WARNING: 'Check', OK: 'OK' };
const SEVERITY_RANK = { OK: 0, WARNING: 1, BLOCKED: 2, ALERT: 3 };
const STATUS_WORDS = {
  ACTIVE: 'In the supply chain', IN_TRANSIT: 'On its way', DISPENSED: 'Dispensed',
  DESTROYED: 'Destroyed', STOLEN: 'Reported stolen', RECALLED: 'Recalled', EXPIRED: 'Expired',
  DECOMMISSIONED: 'Taken off the market', QUARANTINED: 'Quarantined', UNKNOWN: 'Not in the ledger',
};
const STEPS = {
  commissioning: 'Serialised by the manufacturer', packing: 'Packed into a case',
  unpacking: 'Taken out of its case', shipping: 'Shipped', departing: 'Shipped',
  receiving: 'Received', arriving: 'Received', accepting: 'Received', storing: 'Put in stock',
  stocking: 'Put in stock', dispensing: 'Dispensed to a patient', retail_selling: 'Dispensed to a patient',
  decommissioning: 'Taken off the market', destroying: 'Destroyed', inspecting: 'Inspected',
  holding: 'Put on hold', void_shipping: 'Shipment cancelled',
};

async function gql(query, variables) {
  // Signed in, the browser's session cookie goes along (same origin, httpOnly): the page
  // never holds the API key.
  const headers = { 'Content-Type': 'application/json' };
  let res;
  try {
    res = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  } catch (e) {
    throw new Error('The server cannot be reached. Check the network and try again.');
  }
  const body = await res.json().catch(() => ({}));
  if (body.errors && body.errors.length) {
    const e = body.errors[0];
    const err = new Error(e.message);
    err.code = e.extensions && e.extensions.code;
    throw err;
  }
  return body.data;
}

function showError(msg) {
  const el = $('error');
  el.textContent = msg;
  el.hidden = !msg;
}

function text(id, value) { $(id).textContent = value == null || value === '' ? '–' : value; }

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

function item(parent, tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  parent.appendChild(el);
  return el;
}

// Names from the registry, where the caller may see them; the id itself otherwise.
const orgName = (id) => (id && names.orgs[id]) || id;
const siteName = (gln) => (gln && names.sites[gln]) || (gln ? 'site ' + gln : null);

function stepName(t) {
  if (t.disposition === 'recalled') return 'Batch recalled';
  if (t.disposition === 'stolen') return 'Reported stolen';
  if (t.bizStep && STEPS[t.bizStep]) return STEPS[t.bizStep];
  if (t.bizStep) return t.bizStep.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
  if (t.disposition === 'active') return 'Returned to stock (dispense undone)';
  return `Recorded (${t.eventType} ${t.action})`;
}

function localTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function worst(v) {
  return v.reasons.reduce((w, r) => (SEVERITY_RANK[r.severity] > SEVERITY_RANK[w] ? r.severity : w), 'OK');
}

// The reasons worth reading: never "genuine" under a red verdict.
function reasonsShown(v, supplied) {
  const problems = v.reasons.filter((r) => r.severity !== 'OK' && !(supplied && r.code === 'ALREADY_DISPENSED'));
  return problems.length || !v.dispensable ? problems : v.reasons;
}

function advice(v) {
  if (v.dispensable) return 'This pack may be dispensed.';
  return worst(v) === 'ALERT' ? 'Do not dispense. Keep the pack apart and report it.' : 'Do not dispense this pack.';
}

function details(v) {
  const codes = [v.verdict];
  for (const r of v.reasons) if (!codes.includes(r.code)) codes.push(r.code);
  return `Codes: ${codes.join(', ')}` + (v.status ? ` · ledger status ${v.status}` : '');
}

// `supplied`: this pharmacy dispensed the pack itself (just now, or earlier and scanned again).
function render(v, supplied, places) {
  $('result').hidden = false;
  $('confirm').hidden = true;
  const box = $('verdict-box');
  box.dataset.verdict = v.verdict;
  if (supplied) {
    box.className = 'verdict done';
    text('headline', 'Supplied');
    const own = v.reasons.find((r) => r.code === 'ALREADY_DISPENSED');
    text('may', own ? own.message : 'Recorded as dispensed by your pharmacy.');
  } else {
    const warn = worst(v) !== 'OK';
    box.className = 'verdict ' + (v.dispensable ? (warn ? 'warn' : 'ok') : 'bad');
    text('headline', HEADLINES[v.verdict] || 'See the reasons below');
    text('may', advice(v));
  }
  text('details', details(v));
  const reasons = $('reasons');
  clear(reasons);
  const shown = reasonsShown(v, supplied);
  for (const r of shown) {
    const li = item(reasons, 'li', '');
    item(li, 'span', SEVERITY_WORDS[r.severity] || r.severity, 'sev sev-' + r.severity.toLowerCase());
    li.appendChild(document.createTextNode(' ' + r.message));
  }
  $('why').hidden = shown.length === 0;
  renderProduct(v);
  renderJourney(v.timeline, places);
  const seq = ++rendered;
  const ws = $('witness-status');
  text('witness-status', 'Checking the witnesses\' cosignatures…');
  ws.className = 'witness';
  delete ws.dataset.witnessed;
  witnessStatus(v).then(([witnessed, sentence]) => {
    if (seq !== rendered) return;
    text('witness-status', sentence);
    ws.className = 'witness ' + (witnessed ? 'witness-ok' : 'witness-warn');
    ws.dataset.witnessed = witnessed ? 'yes' : 'no';
  });
  const cs = $('completeness-status');
  cs.hidden = !v.completeness;
  if (v.completeness) {
    text('completeness-status', 'Checking that the ledger showed every entry about this pack…');
    cs.className = 'witness';
    completenessStatus(v).then(([complete, sentence]) => {
      if (seq !== rendered) return;
      text('completeness-status', sentence);
      cs.className = 'witness ' + (complete ? 'witness-ok' : 'witness-warn');
      cs.dataset.complete = complete ? 'yes' : 'no';
    });
  }
  text('evidence-idx', v.evidence.map((e) => '#' + e.index).join(', '));
  text('checkpoint-size', v.checkpointSize);
  text('checkpoint-note', v.checkpointNote);
  const pharmacy = me && me.role === 'PHARMACY';
  $('dispense').hidden = !(pharmacy && v.dispensable);
  $('undo').hidden = !(pharmacy && supplied);
  $('provenance').hidden = !me;
  $('provenance-view').hidden = true;
}

function renderProduct(v) {
  const p = v.product || {};
  const t = p.tradeItem;
  text('product-name', t ? [t.productName, t.strength, t.dosageForm].filter(Boolean).join(' ') : NO_PRODUCT_DATA);
  $('product-name').className = t ? 'trade-name' : 'no-data';
  const img = $('product-image');
  img.hidden = !(t && t.imageUrl);
  if (t && t.imageUrl) img.src = t.imageUrl; else img.removeAttribute('src');
  text('product-size', t && t.netContent); text('product-mah', t && t.marketingAuthorisationHolder);
  for (const el of document.querySelectorAll('.master')) el.hidden = !t;
  text('product-gtin', p.gtin); text('product-serial', p.serial); text('product-lot', p.lot);
  text('product-expiry', p.expiry); text('product-status', STATUS_WORDS[v.status] || v.status);
}

// The public timeline in the order things happened, with the places the caller may see
// (`places`: "index|eventTime" → { organization, location } from provenance).
function renderJourney(timeline, places) {
  const tl = $('timeline');
  clear(tl);
  $('no-journey').hidden = timeline.length > 0;
  const steps = timeline.slice().sort((a, b) => (a.eventTime < b.eventTime ? -1 : a.eventTime > b.eventTime ? 1 : a.index - b.index));
  for (const t of steps) {
    const li = item(tl, 'li', '');
    const time = item(li, 'time', localTime(t.eventTime));
    time.dateTime = t.eventTime;
    item(li, 'span', stepName(t) + (t.inherited && t.disposition !== 'recalled' ? ' (with its case or pallet)' : ''), 'step');
    const place = places && places[t.index + '|' + t.eventTime];
    if (place) item(li, 'span', where(place), 'place');
    item(li, 'span', ` ledger #${t.index}`, 'idx');
  }
}

// Completeness, checked in the browser with WebCrypto: the same steps as the core's
// `map::answer::verify_answer` (docs/VERIFY.md §4), except the map-root entry's k256 signature,
// which WebCrypto cannot check; its inclusion in the cited checkpoint is checked instead.
// 1. the map-root entry is included in the checkpoint at the index it states, for this log;
// 2. each identifier's map proof verifies against its root, and the entries the answer lists
//    are exactly the history the map holds;
// 3. every entry a reason cites is listed under some identifier.
const te = new TextEncoder();
const hexBytes = (h) => Uint8Array.from((h || '').match(/../g) || [], (b) => parseInt(b, 16));
const b64Bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const u64 = (n) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n)); return b; };
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
async function sha256(...parts) {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', all));
}
const EMPTY = new Uint8Array(32);
const bit = (key, d) => (key[d >> 3] & (0x80 >> (d & 7))) !== 0;

// RFC 9162 §2.1.3.2.
async function included(leaf, index, size, proof, root) {
  if (index >= size) return false;
  let fn = index, sn = size - 1, r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256([1], p, r);
      while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await sha256([1], r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && same(r, root);
}

// RFC 9162 §2.1.4.2: the tree of `newSize` with root `newRoot` extends the tree of `oldSize`
// with root `oldRoot` (0 < oldSize <= newSize).
async function consistent(oldSize, newSize, oldRoot, newRoot, proof) {
  if (oldSize === newSize) return proof.length === 0 && same(oldRoot, newRoot);
  if (oldSize < 1 || oldSize > newSize || proof.length === 0) return false;
  const path = pow2(oldSize) ? [oldRoot, ...proof] : proof.slice();
  let fn = oldSize - 1, sn = newSize - 1;
  while (fn % 2 === 1) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = await sha256([1], c, fr);
      sr = await sha256([1], c, sr);
      while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      sr = await sha256([1], sr, c);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && same(fr, oldRoot) && same(sr, newRoot);
}

// The history the map proof holds for `id` against `root` ({count, head}), or throws.
async function proven(c, root) {
  const key = await sha256([0x13], te.encode(c.identifier));
  const siblings = c.siblings.map(hexBytes);
  if (siblings.length > 256 || (siblings.length && same(siblings[siblings.length - 1], EMPTY))) throw new Error('malformed map proof');
  let cur = EMPTY, held = { count: 0, head: EMPTY };
  if (c.leaf) {
    const k = hexBytes(c.leaf.key), head = hexBytes(c.leaf.head);
    for (let d = 0; d < siblings.length; d++) if (bit(k, d) !== bit(key, d)) throw new Error('the map proof ends at a leaf off its path');
    cur = await sha256([0x10], k, u64(c.leaf.count), head);
    if (same(k, key)) held = { count: c.leaf.count, head };
  }
  for (let d = siblings.length - 1; d >= 0; d--) {
    cur = bit(key, d) ? await sha256([0x11], siblings[d], cur) : await sha256([0x11], cur, siblings[d]);
  }
  if (!same(cur, root)) throw new Error('the map proof does not lead to the map root');
  return held;
}

// [complete, sentence] for a verification that carries `completeness`.
async function completenessStatus(v) {
  const fail = (why) => [false, `Not proven complete: ${why}. Verify again, and report it if this stays.`];
  try {
    const note = v.checkpointNote.split('\n');
    const cpRoot = b64Bytes(note[2]);
    const m = v.completeness.mapEntry;
    const bytes = b64Bytes(m.dataBase64);
    const lines = new TextDecoder().decode(bytes).split('\n');
    if (lines[0] !== 'rxledger map root v1' || lines[1] !== 'origin ' + note[0] || lines[2] !== 'size ' + m.index) {
      return fail('the map-root entry is not this log\'s entry #' + m.index);
    }
    const mapRoot = b64Bytes(lines[4].replace(/^root /, ''));
    if (!(await included(await sha256([0], bytes), m.index, v.checkpointSize, m.proof.map(hexBytes), cpRoot))) {
      return fail('the map-root entry is not in the cited checkpoint');
    }
    const listed = new Set();
    for (const c of v.completeness.identifiers) {
      let held;
      try { held = await proven(c, mapRoot); } catch (e) { return fail(`${c.identifier}: ${e.message}`); }
      let head = EMPTY, last = -1;
      for (const e of c.entries) {
        if (e.index <= last || e.index >= m.index) return fail(`${c.identifier}: its entries are out of order`);
        head = await sha256([0x12], head, u64(e.index), hexBytes(e.leafHash));
        last = e.index;
        listed.add(e.index);
      }
      if (c.entries.length !== held.count) return fail(`${c.identifier}: the answer lists ${c.entries.length} entries and the ledger's map holds ${held.count}`);
      if (!same(head, held.head)) return fail(`${c.identifier}: the entries listed are not the ones the ledger's map holds`);
    }
    for (const r of v.reasons) for (const i of r.evidence) if (!listed.has(i)) return fail(`ledger entry #${i} is cited but not listed`);
    return [true, `Complete: the ledger's map proves that the ${listed.size} entries shown are every entry about this pack, its cases and its batch (map root in entry #${m.index}).`];
  } catch (e) {
    return fail('the proof could not be read');
  }
}

// Witnessing, checked in the browser with WebCrypto Ed25519: the node is taken at its word
// for the keys and the quorum (`ledgerPublicKey`) and for nothing else. The same checks as the
// core's `cosignature::open_cosigned` and `merkle::verify_consistency` (docs/VERIFY.md §2,
// "What the pages check").
// 1. the cosigned note is a signed note (c2sp.org/signed-note) whose text is a checkpoint of
//    this log, and the log's Ed25519 line (same name and key ID as `ed25519VerifierKey`)
//    verifies over the text;
// 2. each `cosignature/v1` line whose name and key ID are a configured witness's
//    (`witnessVerifierKeys`) verifies (c2sp.org/tlog-cosignature); one that does not refuses
//    the note, lines of other keys are ignored; at least `witnessQuorum` witnesses cosigned;
// 3. the checkpoint the answer cites and the cosigned one are one log: a consistency proof
//    from the smaller to the larger (or equal roots at one size);
// 4. every cited entry is below the cosigned size and included in the cited checkpoint.
async function loadWitnessing() {
  try {
    witnessing = (await gql(`{ ledgerPublicKey { witnessQuorum witnessVerifierKeys
      ed25519VerifierKey } }`)).ledgerPublicKey;
  } catch (e) { witnessing = null; }
}

const MAX_NOTE = 64 * 1024;     // bytes, as the core's `checkpoint::MAX_NOTE_LEN`
const MAX_SIGNATURES = 64;      // lines, as `checkpoint::MAX_SIGNATURES`
const NOTE_TYPE = 0x01, COSIGNATURE_TYPE = 0x04; // signed-note signature types
// Thrown where this browser's WebCrypto has no Ed25519 (or no WebCrypto at all).
class NoEd25519 extends Error {}

// Base64 with padding, nothing else (atob alone would take it without).
function b64Strict(s) {
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new Error('malformed base64');
  return b64Bytes(s);
}

const pow2 = (n) => { while (n > 1 && n % 2 === 0) n /= 2; return n === 1; };

// A note's text (up to and including the first newline of the last blank line) and its
// signature lines `— <name> base64(key ID || payload)`.
function splitNote(note) {
  if (te.encode(note).length > MAX_NOTE) throw new Error('it is larger than 64 KiB');
  if (/[\u0000-\u0009\u000b-\u001f\u007f]/.test(note)) throw new Error('it holds a control character');
  const at = note.lastIndexOf('\n\n');
  const sigs = at < 0 ? '' : note.slice(at + 2);
  if (!sigs.endsWith('\n')) throw new Error('it has no signature lines');
  const lines = sigs.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw new Error(`it has more than ${MAX_SIGNATURES} signatures`);
  return {
    text: note.slice(0, at + 1),
    lines: lines.map((raw) => {
      const m = /^\u2014 (\S+) (\S+)$/.exec(raw);
      if (!m || m[1].includes('+')) throw new Error('a signature line is malformed');
      const bytes = b64Strict(m[2]);
      if (bytes.length < 5) throw new Error('a signature line is malformed');
      return { name: m[1], keyId: bytes.slice(0, 4), payload: bytes.slice(4) };
    }),
  };
}

// A checkpoint's origin, size and root from a note's text.
function checkpointBody(text) {
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3 || !lines[0] || !/^(0|[1-9][0-9]*)$/.test(lines[1]) || lines.slice(3).some((l) => !l)) {
    throw new Error('it is not a checkpoint');
  }
  const size = Number(lines[1]), root = b64Strict(lines[2]);
  if (!Number.isSafeInteger(size) || root.length !== 32) throw new Error('it is not a checkpoint');
  return { origin: lines[0], size, root };
}

// An Ed25519 vkey `<name>+<hex key ID>+<base64(type || key)>` of signature type `type`,
// its key ID checked, as { name, keyId, key } with a WebCrypto key.
async function verifierKey(vkey, type) {
  const [name, id, ...rest] = vkey.split('+'); // base64 may itself hold '+'
  const blob = b64Strict(rest.join('+'));
  if (!name || !/^[0-9a-f]{8}$/.test(id) || blob.length !== 33 || blob[0] !== type) {
    throw new Error(`the verifier key ${name} is malformed`);
  }
  const keyId = (await sha256(te.encode(name), [0x0a, type], blob.slice(1))).slice(0, 4);
  if (!same(keyId, hexBytes(id))) throw new Error(`the verifier key ${name} has the wrong key ID`);
  if (!(window.crypto && crypto.subtle)) throw new NoEd25519();
  try {
    return { name, keyId, key: await crypto.subtle.importKey('raw', blob.slice(1), { name: 'Ed25519' }, false, ['verify']) };
  } catch (e) {
    if (e && e.name === 'NotSupportedError') throw new NoEd25519();
    throw new Error(`the verifier key ${name} is not an Ed25519 key`);
  }
}

const ed25519Verify = (key, sig, msg) => crypto.subtle.verify({ name: 'Ed25519' }, key, sig, msg);

// Steps 1 and 2: the cosigned note's checkpoint and the names of the configured witnesses
// whose cosignature verifies, or throws with what failed.
async function openCosigned(note, logVkey, witnessVkeys) {
  const log = await verifierKey(logVkey, NOTE_TYPE);
  const witnesses = [];
  for (const k of witnessVkeys) witnesses.push(await verifierKey(k, COSIGNATURE_TYPE));
  let split, cp;
  try {
    split = splitNote(note);
    cp = checkpointBody(split.text);
  } catch (e) { throw new Error(`the cosigned checkpoint cannot be read: ${e.message}`); }
  const { text, lines } = split;
  const of = (k) => lines.filter((l) => l.name === k.name && same(l.keyId, k.keyId));
  const logLines = of(log);
  let signed = cp.origin === log.name && logLines.length > 0;
  for (const l of logLines) signed = signed && l.payload.length === 64 && await ed25519Verify(log.key, l.payload, te.encode(text));
  if (!signed) throw new Error('the log\'s signature on the cosigned checkpoint does not verify');
  const names = [];
  for (const w of witnesses) {
    for (const l of of(w)) {
      // timestamped_signature: u64 POSIX seconds, big-endian (1 to 2^63 - 1), then 64 bytes.
      const ts = l.payload.length === 72 ? new DataView(l.payload.buffer, l.payload.byteOffset).getBigUint64(0) : 0n;
      const msg = te.encode(`cosignature/v1\ntime ${ts}\n${text}`);
      if (ts === 0n || ts >= 2n ** 63n || !(await ed25519Verify(w.key, l.payload.slice(8), msg))) {
        throw new Error(`the cosignature of ${w.name} does not verify`);
      }
      if (!names.includes(w.name)) names.push(w.name);
    }
  }
  return { size: cp.size, root: cp.root, names };
}

// Steps 3 and 4: why the cited checkpoint does not hold the cited entries as the cosigned
// one `c` ({size, root}) does, or null.
async function linked(v, c) {
  let cited;
  try { cited = checkpointBody(splitNote(v.checkpointNote).text); } catch (e) { return 'the checkpoint the answer cites cannot be read'; }
  const [a, b] = cited.size <= c.size ? [cited, c] : [c, cited];
  let proof = [];
  if (a.size !== b.size) {
    try {
      const d = await gql('query($a: Int!, $b: Int!) { consistencyProof(fromSize: $a, toSize: $b) { hashes } }', { a: a.size, b: b.size });
      proof = d.consistencyProof.hashes.map(hexBytes);
    } catch (e) { return 'the consistency proof could not be fetched'; }
  }
  if (!(await consistent(a.size, b.size, a.root, b.root, proof))) {
    return `the checkpoint the answer cites (${cited.size} entries) is not consistent with the cosigned one (${c.size} entries)`;
  }
  for (const e of v.evidence) {
    if (e.treeSize !== cited.size || !(await included(hexBytes(e.leafHash), e.index, cited.size, e.proof.map(hexBytes), cited.root))) {
      return `ledger entry #${e.index} is not included in the checkpoint the answer cites`;
    }
  }
  return null;
}

// [witnessed, sentence]: whether the checkpoint the evidence cites is held to account by the
// configured witnesses. The same rule and words as the page without script
// (`html::witness_status`), with every signature and proof checked here.
async function witnessStatus(v) {
  if (!witnessing) return [false, 'Witness status unknown: the ledger\'s witness settings could not be read.'];
  const q = witnessing.witnessQuorum;
  const c = v.cosignedCheckpoint;
  const cited = v.evidence.map((e) => e.index);
  const newest = cited.length ? Math.max(...cited) : null;
  if (q === 0) return [false, 'No witnesses are configured for this ledger: the evidence rests on the operator\'s signature alone.'];
  if (!c) return [false, `Not yet witnessed: no checkpoint has the ${q} witness cosignature${q === 1 ? '' : 's'} this ledger requires.`];
  if (!witnessing.ed25519VerifierKey) return [false, 'Not witnessed: the ledger publishes no Ed25519 key to check its checkpoints with.'];
  let cp;
  try {
    cp = await openCosigned(c.note, witnessing.ed25519VerifierKey, witnessing.witnessVerifierKeys);
  } catch (e) {
    if (e instanceof NoEd25519) return [false, 'Witness status unknown: cannot check witness cosignatures in this browser (it has no Ed25519 in WebCrypto).'];
    return [false, `Not witnessed: ${e.message}.`];
  }
  if (cp.size !== c.size) return [false, 'Not witnessed: the cosigned checkpoint is not of the size the ledger says.'];
  if (cp.names.length < q) return [false, `Not witnessed: the newest cosigned checkpoint carries ${cp.names.length} of the ${q} required cosignatures.`];
  if (newest !== null && newest >= cp.size) {
    return [false, `Not yet witnessed: ledger entry #${newest} is newer than the last checkpoint the witnesses cosigned (${cp.size} entries). Verify again in a minute.`];
  }
  const why = await linked(v, cp);
  if (why) return [false, `Not witnessed: ${why}.`];
  return [true, `Witnessed: the checkpoint of ${cp.size} entries${newest !== null ? ', which holds every cited entry,' : ''} is cosigned by ${cp.names.join(', ')} (${q} required).`];
}
const PROVENANCE = `query($c: String!) { provenance(code: $c) { gtin serial status lot expiry custodian
  location parent history { index eventTime eventType action bizStep disposition organization location via } } }`;

async function provenanceOf(code) {
  try { return (await gql(PROVENANCE, { c: code })).provenance; } catch (e) { return null; }
}

// Whether this pharmacy's own last event on the pack is its dispense.
function dispensedByMe(v, p) {
  if (!me || me.role !== 'PHARMACY' || v.verdict !== 'ALREADY_DISPENSED' || !p) return false;
  const mine = p.history.filter((h) => h.organization === me.orgId);
  const last = mine[mine.length - 1];
  return !!last && last.bizStep === 'dispensing';
}

// "Corner Pharmacy, High Street": the site's name, and the organization's unless the site
// already names it.
function where(h) {
  const org = orgName(h.organization);
  const site = siteName(h.location);
  if (site && org && site.includes(org)) return site;
  return [org, site].filter(Boolean).join(', ');
}

function placesOf(p) {
  const out = {};
  if (p) for (const h of p.history) out[h.index + '|' + h.eventTime] = h;
  return out;
}

async function show(v, justSupplied) {
  const p = me ? await provenanceOf(current) : null;
  render(v, justSupplied || dispensedByMe(v, p), placesOf(p));
}

async function verify(code) {
  showError('');
  current = code;
  try {
    const d = await gql(VERIFY, { code });
    await show(d.verify, false);
  } catch (e) {
    $('result').hidden = true;
    showError((e.code === 'INVALID_CODE' ? 'This code cannot be read: ' : '') + e.message);
  }
}

async function change(mutation) {
  showError('');
  try {
    const d = await gql(`mutation($c: String!) { ${mutation}(code: $c) { entryIndex verification {
      ${VERIFICATION} } } }`, { c: current });
    await show(d[mutation].verification, mutation === 'dispense');
    $('code').focus();
  } catch (e) {
    showError(e.message);
  }
}

// A scanner in keyboard-wedge mode may send GS as Ctrl+]; keep it as the GS character.
$('code').addEventListener('keydown', (ev) => {
  if (ev.ctrlKey && (ev.key === ']' || ev.code === 'BracketRight')) {
    ev.preventDefault();
    const el = ev.target;
    const at = el.selectionStart;
    el.value = el.value.slice(0, at) + '\u001d' + el.value.slice(el.selectionEnd);
    el.selectionStart = el.selectionEnd = at + 1;
  }
});

$('scan-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const code = $('code').value.trim();
  if (!code) { showError('Scan or type a code first.'); return; }
  verify(code).then(() => { $('code').select(); });
});

$('photo').addEventListener('change', async () => {
  const file = $('photo').files[0];
  if (!file) return;
  showError('');
  try {
    const res = await fetch('/scan', { method: 'POST', body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' } });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) { showError((body.error && body.error.message) || 'The photo could not be read.'); return; }
    $('code').value = body.codes[0];
    await verify(body.codes[0]);
  } catch (e) {
    showError('The photo could not be sent: ' + e.message);
  } finally {
    $('photo').value = '';
  }
});

// Dispensing takes two steps: the button opens the confirmation, which names the pack.
$('dispense').addEventListener('click', () => {
  const name = $('product-name').textContent;
  text('confirm-text', `Record ${name === NO_PRODUCT_DATA ? 'this pack' : name}, serial `
    + `${$('product-serial').textContent}, as dispensed to a patient. You can undo it for a few minutes.`);
  $('confirm').hidden = false;
  $('confirm-dispense').focus();
});
function cancelDispense() {
  $('confirm').hidden = true;
  $('dispense').focus();
}
$('cancel-dispense').addEventListener('click', cancelDispense);
$('confirm').addEventListener('keydown', (ev) => { if (ev.key === 'Escape') cancelDispense(); });
$('confirm-dispense').addEventListener('click', () => change('dispense'));
$('undo').addEventListener('click', () => change('undoDispense'));

$('provenance').addEventListener('click', async () => {
  showError('');
  try {
    const p = (await gql(PROVENANCE, { c: current })).provenance;
    $('provenance-view').hidden = false;
    const list = $('provenance-list');
    clear(list);
    if (!p) { text('provenance-head', 'No events are recorded for this pack.'); return; }
    const holder = p.custodian ? where({ organization: p.custodian, location: p.location }) : 'a party you may not see';
    text('provenance-head', `${STATUS_WORDS[p.status] || p.status}; held by ${holder}`
      + (p.parent ? `; inside ${p.parent}` : ''));
    for (const h of p.history) {
      const li = item(list, 'li', '');
      const time = item(li, 'time', localTime(h.eventTime));
      time.dateTime = h.eventTime;
      item(li, 'span', stepName(h), 'step');
      item(li, 'span', where(h)
        + (h.via !== 'DIRECT' ? ' (through its case, pallet or batch)' : ''), 'place');
      item(li, 'span', ` ledger #${h.index}`, 'idx');
    }
  } catch (e) { showError(e.message); }
});

$('lot-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  showError('');
  try {
    const d = await gql(`query($g: String!, $l: String!) { lot(gtin: $g, lot: $l) { gtin lot packs
      byStatus { key count } byCustodian { key count } } }`, { g: $('lot-gtin').value.trim(), l: $('lot-lot').value.trim() });
    const view = $('lot-view');
    clear(view);
    item(view, 'p', `${d.lot.packs} packs of batch ${d.lot.lot}`);
    for (const [title, rows, name] of [['By status', d.lot.byStatus, (k) => STATUS_WORDS[k] || k],
      ['By holder', d.lot.byCustodian, orgName]]) {
      item(view, 'h4', title);
      const wrap = item(view, 'div', '', 'scroll');
      const table = document.createElement('table');
      for (const r of rows) {
        const tr = document.createElement('tr');
        item(tr, 'td', name(r.key) || '–'); item(tr, 'td', String(r.count));
        table.appendChild(tr);
      }
      wrap.appendChild(table);
    }
  } catch (e) { showError(e.message); }
});

const TRACE = `mutation($c: String!, $s: TraceScopeIn!, $r: TraceReasonIn!, $i: String, $t: Boolean!) {
  traceRequest(code: $c, scope: $s, reason: $r, incidentNumber: $i, test: $t) {
    request { entryIndex subject parties test } checkpointSize
    packs { code status owners { party { organization name gln } step since entryIndex }
      transactions { entryIndex eventTime bizStep party { organization name } documents throughContainer } }
    epcisDocument evidenceBundle } }`;
const OWNER_STEPS = { COMMISSIONED: 'Serialised by', SHIPPED: 'Shipped to', RECEIVED: 'Received by' };

// A party as the answer names it: the registry's name when the caller may see it.
const partyName = (p) => names.orgs[p.organization] || p.name || p.organization;

// A link that saves `text` as a file, made in the browser (no second request to the server).
function download(parent, id, label, text, file, type) {
  const a = item(parent, 'a', label);
  a.id = id;
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = file;
  return a;
}

function renderTrace(t) {
  const view = $('trace-view');
  clear(view);
  const r = t.request;
  item(view, 'p', `${r.test ? 'Test request' : 'Request'} recorded as ledger entry #${r.entryIndex}, `
    + `answered against the checkpoint of ${t.checkpointSize} entries. Parties asked: `
    + (r.parties.map(orgName).join(', ') || 'none') + '.');
  for (const p of t.packs) {
    item(view, 'h4', `${p.code} · ${STATUS_WORDS[p.status] || p.status}`);
    const owners = item(view, 'ol', '', 'timeline');
    for (const o of p.owners) {
      const li = item(owners, 'li', '');
      const time = item(li, 'time', localTime(o.since));
      time.dateTime = o.since;
      item(li, 'span', `${OWNER_STEPS[o.step] || o.step} ${partyName(o.party)}`, 'step');
      if (o.party.gln) item(li, 'span', siteName(o.party.gln) || o.party.gln, 'place');
      item(li, 'span', ` ledger #${o.entryIndex}`, 'idx');
    }
    if (p.transactions.length) {
      const wrap = item(view, 'div', '', 'scroll');
      const table = document.createElement('table');
      const head = document.createElement('tr');
      for (const h of ['When', 'Step', 'By', 'Documents', 'Ledger']) item(head, 'th', h);
      table.appendChild(head);
      for (const x of p.transactions) {
        const tr = document.createElement('tr');
        item(tr, 'td', localTime(x.eventTime));
        item(tr, 'td', stepName({ bizStep: x.bizStep }) + (x.throughContainer ? ' (with its case or pallet)' : ''));
        item(tr, 'td', partyName(x.party));
        item(tr, 'td', x.documents.join(', ') || '–');
        item(tr, 'td', '#' + x.entryIndex);
        table.appendChild(tr);
      }
      wrap.appendChild(table);
    }
  }
  const files = item(view, 'p', '', 'actions');
  download(files, 'trace-epcis', 'EPCIS 2.0 document', t.epcisDocument,
    `trace-${r.entryIndex}.jsonld`, 'application/ld+json');
  if (t.evidenceBundle) {
    files.appendChild(document.createTextNode(' · '));
    download(files, 'trace-bundle', 'Evidence bundle', t.evidenceBundle,
      `trace-${r.entryIndex}-bundle.json`, 'application/json');
    item(view, 'p', 'Check the bundle offline: rxledger verify-bundle FILE --verifier-key '
      + '(the log\'s verifier key, from rxledger vkey).', 'help');
  }
}

$('trace-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  showError('');
  const incident = $('trace-incident').value.trim();
  try {
    const d = await gql(TRACE, { c: $('trace-code').value.trim(), s: $('trace-scope').value,
      r: $('trace-reason').value, i: incident || null, t: $('trace-test').checked });
    renderTrace(d.traceRequest);
  } catch (e) { showError(e.message); }
});

// Alert cases: the inbox (filters), one case's records, and the actions the caller may take.
const CASE_FIELDS = `id alertCode pack brandOwner status rootCause escalated nextDueAt openedAt updatedAt
  records { entryIndex action actor at rootCause text alertMessage alertEvidence }`;
const CASE_ACTIONS = {
  OPENED: 'Opened', INFORMATION_REQUESTED: 'Information requested', ANSWERED: 'Answered',
  COMMENTED: 'Comment', REMINDED: 'Reminder sent', ESCALATED: 'Escalated to the regulator', CLOSED: 'Closed',
};
const CASE_STATUS = { OPEN: 'Open', INFORMATION_REQUESTED: 'Information requested', CLOSED: 'Closed' };
const ROOT_CAUSES = {
  TECHNICAL_ERROR: 'Technical error', PROCESS_ERROR: 'Process error',
  FALSIFICATION_CONFIRMED: 'Falsification confirmed', NO_RESPONSE: 'No response',
};

async function loadCases() {
  const status = $('cases-status').value;
  const filter = {};
  if (status) filter.status = status;
  if ($('cases-escalated').checked) filter.escalated = true;
  const list = $('cases-list');
  clear(list);
  try {
    const d = await gql(`query($f: AlertCaseFilter) { alertCases(filter: $f, first: 100) { ${CASE_FIELDS} } }`, { f: filter });
    const shown = status ? d.alertCases : d.alertCases.filter((c) => c.status !== 'CLOSED');
    if (!shown.length) { item(list, 'p', 'No cases.', 'no-data'); return; }
    const wrap = item(list, 'div', '', 'scroll');
    const table = document.createElement('table');
    const head = document.createElement('tr');
    for (const h of ['Case', 'Alert', 'Pack', 'Brand owner', 'Status', 'Next due']) item(head, 'th', h);
    table.appendChild(head);
    for (const c of shown) {
      const tr = document.createElement('tr');
      const open = item(item(tr, 'td', ''), 'button', '#' + c.id, 'link');
      open.type = 'button';
      open.id = 'case-' + c.id;
      open.addEventListener('click', () => renderCase(c));
      item(tr, 'td', c.alertCode);
      item(tr, 'td', c.pack.replace(/^sgtin:/, ''));
      item(tr, 'td', c.brandOwner ? orgName(c.brandOwner) : 'none (the regulator\'s)');
      item(tr, 'td', (CASE_STATUS[c.status] || c.status) + (c.escalated ? ', escalated' : ''));
      item(tr, 'td', c.nextDueAt ? localTime(c.nextDueAt) : '–');
      table.appendChild(tr);
    }
    wrap.appendChild(table);
  } catch (e) { item(list, 'p', e.message, 'no-data'); }
}

function renderCase(c) {
  const view = $('case-view');
  view.hidden = false;
  clear(view);
  item(view, 'h3', `Case #${c.id}: ${c.alertCode}`);
  item(view, 'p', `Pack ${c.pack.replace(/^sgtin:/, '')} · ${CASE_STATUS[c.status] || c.status}`
    + (c.rootCause ? ` (${ROOT_CAUSES[c.rootCause] || c.rootCause})` : '')
    + (c.escalated ? ' · escalated' : '') + (c.nextDueAt ? ` · next due ${localTime(c.nextDueAt)}` : ''));
  const records = item(view, 'ol', '', 'timeline');
  records.id = 'case-records';
  for (const r of c.records) {
    const li = item(records, 'li', '');
    const time = item(li, 'time', localTime(r.at));
    time.dateTime = r.at;
    item(li, 'span', CASE_ACTIONS[r.action] || r.action, 'step');
    item(li, 'span', r.actor === 'rxledger' ? 'by the ledger' : 'by ' + orgName(r.actor), 'place');
    const said = [r.alertMessage, r.text, r.rootCause && (ROOT_CAUSES[r.rootCause] || r.rootCause)].filter(Boolean).join(' · ');
    if (said) item(li, 'span', ' ' + said);
    item(li, 'span', ` ledger #${r.entryIndex}` + (r.alertEvidence.length ? `, evidence #${r.alertEvidence.join(', #')}` : ''), 'idx');
  }
  if (c.status === 'CLOSED' || !me) return;
  const regulator = me.role === 'REGULATOR';
  const owner = me.orgId === c.brandOwner;
  const form = item(view, 'form', '');
  form.id = 'case-act';
  const label = item(form, 'label', 'Text');
  label.htmlFor = 'case-text';
  const textBox = item(form, 'textarea', '');
  textBox.id = 'case-text';
  textBox.maxLength = 2000;
  const buttons = item(form, 'p', '', 'actions');
  const act = async (mutation, vars) => {
    showError('');
    try {
      const d = await gql(mutation, Object.assign({ id: c.id, t: textBox.value.trim() }, vars || {}));
      renderCase(Object.values(d)[0]);
      loadCases();
    } catch (e) { showError(e.message); }
  };
  const button = (id, label, cls, run) => {
    const b = item(buttons, 'button', label, cls);
    b.type = 'button';
    b.id = id;
    b.addEventListener('click', run);
  };
  if (regulator) {
    button('case-request', 'Request information', '', () => act(`mutation($id: Int!, $t: String!) {
      requestCaseInformation(id: $id, text: $t) { ${CASE_FIELDS} } }`));
  }
  if (owner) {
    button('case-answer', 'Answer', '', () => act(`mutation($id: Int!, $t: String!) {
      answerCase(id: $id, text: $t) { ${CASE_FIELDS} } }`));
  }
  if (regulator || owner) {
    const select = document.createElement('select');
    select.id = 'case-root-cause';
    select.setAttribute('aria-label', 'Root cause');
    for (const [k, v] of Object.entries(ROOT_CAUSES)) {
      if (k === 'NO_RESPONSE' && !(regulator && c.escalated)) continue;
      const o = item(select, 'option', v);
      o.value = k;
    }
    buttons.appendChild(select);
    button('case-close', 'Close the case', 'secondary', () => act(`mutation($id: Int!, $c: RootCauseIn!, $t: String) {
      closeCase(id: $id, rootCause: $c, text: $t) { ${CASE_FIELDS} } }`, { c: select.value, t: textBox.value.trim() || null }));
  }
}

$('cases-filter').addEventListener('submit', (ev) => { ev.preventDefault(); loadCases(); });

function renderLedger(s) {
  const view = $('ledger-view');
  clear(view);
  item(view, 'p', `${s.size} entries, root ${s.rootHash.slice(0, 16)}…`);
  const a = s.lastAudit;
  item(view, 'p', a ? `Last audit ${localTime(a.finishedAt)}: ${a.ok ? 'sound' : 'PROBLEMS FOUND'} (${a.entriesChecked} entries, `
    + `${a.checkpointsChecked} checkpoints checked)` + (a.problems.length ? ': ' + a.problems.join('; ') : '')
    : 'No audit has run on this node since it started.');
  item(view, 'pre', s.checkpointNote);
}

const LEDGER = `{ ledgerStatus { size rootHash checkpointNote lastAudit { finishedAt ok entriesChecked
  checkpointsChecked problems } } }`;

async function refreshLedger() {
  try { renderLedger((await gql(LEDGER)).ledgerStatus); } catch (e) { showError(e.message); }
}

$('refresh-ledger').addEventListener('click', refreshLedger);
$('run-audit').addEventListener('click', async () => {
  showError('');
  try { await gql('mutation { runAudit { ok } }'); await refreshLedger(); } catch (e) { showError(e.message); }
});

// The organization and site names this key may see (its own; all for regulators and admins).
async function loadNames() {
  names = { orgs: {}, sites: {} };
  try {
    const d = await gql('{ organizations { id name } sites { gln name } }');
    for (const o of d.organizations) names.orgs[o.id] = o.name;
    for (const s of d.sites) names.sites[s.gln] = s.name;
  } catch (e) { /* names are a courtesy: ids stay readable */ }
}

async function signIn() {
  me = null;
  try {
    me = (await gql('{ me { orgId role } }')).me;
  } catch (e) {
    // An ended session is cleared by the answer; the page carries on anonymously.
    showError(e.message);
  }
  if (me) await loadNames(); else names = { orgs: {}, sites: {} };
  text('signed-in', me ? `Signed in as ${orgName(me.orgId)} (${me.role.toLowerCase()})` : 'Sign in with an API key');
  $('signout-form').hidden = !me;
  $('admin-link').hidden = !(me && me.role === 'ADMIN');
  const regulator = me && (me.role === 'REGULATOR' || me.role === 'ADMIN');
  $('regulator').hidden = !regulator;
  $('trace').hidden = !(me && (me.role === 'REGULATOR' || me.role === 'MANUFACTURER'));
  const desk = me && ['REGULATOR', 'ADMIN', 'MANUFACTURER'].includes(me.role);
  $('cases').hidden = !desk;
  if (desk) loadCases();
  if (regulator) refreshLedger();
}

// The witness settings first: every verdict shown is checked against them.
(async () => { await loadWitnessing(); await signIn(); })();
