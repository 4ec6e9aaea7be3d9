// rxledger pharmacist's page: plain JavaScript against /graphql and /scan, no build step.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY = 'rxledger.apiKey';
let current = null; // the code last verified
let me = null;      // { orgId, role } when signed in

const VERIFY = `query($code: String!) { verify(code: $code) { verdict dispensable
  reasons { code severity message evidence } product { gtin serial lot expiry } status
  evidence { index } checkpointSize checkpointNote
  timeline { index eventTime eventType action bizStep disposition inherited } } }`;

const HEADLINES = {
  AUTHENTIC: 'Genuine pack', NOT_IN_YOUR_CUSTODY: 'Genuine pack (not shipped to you)',
  UNKNOWN_PRODUCT: 'Unknown product', UNKNOWN_SERIAL: 'Unknown serial number: possible counterfeit',
  BATCH_MISMATCH: 'Batch does not match: possible counterfeit',
  EXPIRY_MISMATCH: 'Expiry date does not match: possible counterfeit', EXPIRED: 'Expired',
  ALREADY_DISPENSED: 'Already dispensed', RECALLED: 'Recalled', STOLEN: 'Reported stolen',
  DESTROYED: 'Destroyed', DECOMMISSIONED: 'Taken off the market',
  NO_SERIAL: 'Cannot be verified: no serial number',
};

async function gql(query, variables) {
  const headers = { 'Content-Type': 'application/json' };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = 'Bearer ' + key;
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

function item(parent, tag, content) {
  const el = document.createElement(tag);
  el.textContent = content;
  parent.appendChild(el);
  return el;
}

function render(v) {
  $('result').hidden = false;
  const warn = v.reasons.some((r) => r.severity === 'WARNING');
  $('verdict-box').className = 'verdict ' + (v.dispensable ? (warn ? 'warn' : 'ok') : 'bad');
  text('verdict', v.verdict);
  text('headline', HEADLINES[v.verdict] || v.verdict);
  text('may', v.dispensable ? 'This pack may be dispensed.' : 'Do not dispense this pack.');
  const reasons = $('reasons');
  clear(reasons);
  for (const r of v.reasons) item(reasons, 'li', `${r.code} (${r.severity.toLowerCase()}): ${r.message}`);
  const p = v.product || {};
  text('product-gtin', p.gtin); text('product-serial', p.serial); text('product-lot', p.lot);
  text('product-expiry', p.expiry); text('product-status', v.status);
  const tl = $('timeline');
  clear(tl);
  for (const t of v.timeline) {
    const li = item(tl, 'li', '');
    item(li, 'time', t.eventTime);
    li.appendChild(document.createTextNode(' ' + (t.bizStep || `${t.eventType} ${t.action}`).replace(/_/g, ' ')
      + (t.inherited ? ' (with its case or pallet)' : '') + ` · ledger #${t.index}`));
  }
  text('evidence-idx', v.evidence.map((e) => '#' + e.index).join(', '));
  text('checkpoint-size', v.checkpointSize);
  text('checkpoint-note', v.checkpointNote);
  const pharmacy = me && me.role === 'PHARMACY';
  $('dispense').hidden = !(pharmacy && v.dispensable);
  $('undo').hidden = !(pharmacy && v.verdict === 'ALREADY_DISPENSED');
  $('provenance').hidden = !me;
  $('provenance-view').hidden = true;
}

async function verify(code) {
  showError('');
  current = code;
  try {
    const d = await gql(VERIFY, { code });
    render(d.verify);
  } catch (e) {
    $('result').hidden = true;
    showError((e.code === 'INVALID_CODE' ? 'This code cannot be read: ' : '') + e.message);
  }
}

async function change(mutation) {
  showError('');
  try {
    const d = await gql(`mutation($c: String!) { ${mutation}(code: $c) { entryIndex verification {
      verdict dispensable reasons { code severity message evidence } product { gtin serial lot expiry }
      status evidence { index } checkpointSize checkpointNote
      timeline { index eventTime eventType action bizStep disposition inherited } } } }`, { c: current });
    render(d[mutation].verification);
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

$('dispense').addEventListener('click', () => change('dispense'));
$('undo').addEventListener('click', () => change('undoDispense'));

$('provenance').addEventListener('click', async () => {
  showError('');
  try {
    const d = await gql(`query($c: String!) { provenance(code: $c) { gtin serial status lot expiry custodian
      location parent history { index eventTime eventType action bizStep disposition organization location via } } }`, { c: current });
    const p = d.provenance;
    $('provenance-view').hidden = false;
    const list = $('provenance-list');
    clear(list);
    if (!p) { text('provenance-head', 'No events are recorded for this pack.'); return; }
    text('provenance-head', `${p.status}; custodian ${p.custodian || 'not visible to you'}`
      + (p.location ? ` at ${p.location}` : '') + (p.parent ? `; inside ${p.parent}` : ''));
    for (const h of p.history) {
      const li = item(list, 'li', '');
      item(li, 'time', h.eventTime);
      li.appendChild(document.createTextNode(` ${h.bizStep || h.eventType + ' ' + h.action} by ${h.organization || '?'}`
        + (h.location ? ` at ${h.location}` : '') + (h.via !== 'DIRECT' ? ` via ${h.via}` : '') + ` · ledger #${h.index}`));
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
    item(view, 'p', `${d.lot.packs} packs of lot ${d.lot.lot}`);
    for (const [title, rows] of [['By status', d.lot.byStatus], ['By custodian', d.lot.byCustodian]]) {
      item(view, 'h4', title);
      const table = document.createElement('table');
      for (const r of rows) {
        const tr = document.createElement('tr');
        item(tr, 'td', r.key); item(tr, 'td', String(r.count));
        table.appendChild(tr);
      }
      view.appendChild(table);
    }
  } catch (e) { showError(e.message); }
});

function renderLedger(s) {
  const view = $('ledger-view');
  clear(view);
  item(view, 'p', `${s.size} entries, root ${s.rootHash.slice(0, 16)}…`);
  const a = s.lastAudit;
  item(view, 'p', a ? `Last audit ${a.finishedAt}: ${a.ok ? 'sound' : 'PROBLEMS FOUND'} (${a.entriesChecked} entries, `
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

async function signIn() {
  me = null;
  if (sessionStorage.getItem(KEY)) {
    try {
      me = (await gql('{ me { orgId role } }')).me;
    } catch (e) {
      sessionStorage.removeItem(KEY);
      showError('That API key was refused: ' + e.message);
    }
  }
  text('signed-in', me ? `Signed in as ${me.orgId} (${me.role})` : 'Sign in with an API key');
  const regulator = me && (me.role === 'REGULATOR' || me.role === 'ADMIN');
  $('regulator').hidden = !regulator;
  if (regulator) refreshLedger();
}

$('key-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const k = $('key').value.trim();
  if (k) sessionStorage.setItem(KEY, k);
  $('key').value = '';
  await signIn();
  if (current) await verify(current);
});

$('forget-key').addEventListener('click', async () => {
  sessionStorage.removeItem(KEY);
  await signIn();
  if (current) await verify(current);
});

signIn();
