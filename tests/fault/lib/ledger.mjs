// ledger.mjs — the fault suite's bookkeeping: what a client handed to its
// application, checked against what was committed, and the figures each
// case prints (TAP diagnostics) and writes (Markdown, when
// $COMET_ARTIFACTS_FAULT names a directory).
//
// The rule checked, per client and channel: the application sees seqs
// 1..N (N = the packets committed on the channel) each exactly once, in
// increasing order, and each packet carries the payload committed with
// that seq (n = seq, see publisher.mjs) — except that an explicit gap may
// stand for seqs that retention removed (at most `pruned`, the highest seq
// pruned before the client could have it; 0 when nothing was pruned).
// A hole without a gap, a gap over packets still kept, a duplicate or a
// packet out of order is a problem.
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';

const MAX_PROBLEMS = 12;

/*
 * Check one channel of a client.  events: [{type: 'packet', value: {channel,
 * seq, data}} | {type: 'gap', value: {channel, from, to}}] in the order the
 * application saw them (other types and channels are ignored).  Returns
 * {received, duplicates, gaps, gapSeqs, problems}.
 */
export function checkChannel(events, channel, sent, pruned = 0) {
  const result = {received: 0, duplicates: 0, gaps: 0, gapSeqs: 0, problems: []};
  const problem = text => { result.problems.push(`${channel}: ${text}`); };
  const seen = new Set();
  let next = 1;                 // the seq expected next
  for (const event of events) {
    const value = event.value;
    if (!value || value.channel !== channel) continue;
    if (event.type === 'gap') {
      result.gaps++;
      result.gapSeqs += Math.max(0, value.to - value.from + 1);
      if (value.from !== next) problem(`a gap ${value.from}-${value.to} where seq ${next} was expected`);
      if (value.to > pruned)
        problem(`a gap ${value.from}-${value.to} over packets still kept (pruned up to ${pruned})`);
      next = Math.max(next, value.to + 1);
      continue;
    }
    if (event.type !== 'packet' || typeof value.seq !== 'number') continue;
    const seq = value.seq;
    result.received++;
    if (seen.has(seq)) {
      result.duplicates++;
      problem(`seq ${seq} delivered again`);
      continue;
    }
    seen.add(seq);
    if (seq < next) problem(`seq ${seq} out of order (after ${next - 1})`);
    else if (seq > next) problem(`seqs ${next}..${seq - 1} missing, no gap reported (next came ${seq})`);
    const n = value.data && value.data.n;
    if (n !== seq) problem(`seq ${seq} carries n = ${JSON.stringify(n)}, not its own payload`);
    next = Math.max(next, seq + 1);
  }
  if (next - 1 < sent) problem(`seqs ${next}..${sent} never arrived (sent ${sent})`);
  if (next - 1 > sent) problem(`seqs up to ${next - 1} seen, only ${sent} sent`);
  return result;
}

/*
 * Check every channel of a client: sent is {channel: N}, pruned
 * {channel: highest seq pruned}.  Returns the summed figures and every
 * problem (the first few, then a count).
 */
export function checkClient(events, sent, pruned = {}) {
  const total = {received: 0, duplicates: 0, gaps: 0, gapSeqs: 0, problems: []};
  for (const [channel, n] of Object.entries(sent)) {
    const r = checkChannel(events, channel, n, pruned[channel] || 0);
    total.received += r.received;
    total.duplicates += r.duplicates;
    total.gaps += r.gaps;
    total.gapSeqs += r.gapSeqs;
    total.problems.push(...r.problems);
  }
  if (total.problems.length > MAX_PROBLEMS) {
    const more = total.problems.length - MAX_PROBLEMS;
    total.problems = [...total.problems.slice(0, MAX_PROBLEMS), `... and ${more} more`];
  }
  return total;
}

/* VmRSS of a process in kB (NaN when it cannot be read: the process is gone). */
export function rssKb(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch (e) {
    return NaN;
  }
}

/* ---- the record of a run ---------------------------------------------------------- */

const rows = [];     // one per case and client
const notes = [];    // one per case: what the fault did

/*
 * Record a client's figures for a case; returns the diagnostic line:
 *   fault CASE CLIENT: sent=... received=... duplicates=... gaps=... ...
 */
export function recordClient(caseName, client, figures) {
  rows.push({caseName, client, ...figures});
  const f = figures;
  return `fault ${caseName} ${client}: sent=${f.sent} received=${f.received} duplicates=${f.duplicates} ` +
    `gaps=${f.gaps} gap_seqs=${f.gapSeqs} wire_duplicates=${f.wireDuplicates} sessions=${f.sessions} ` +
    `retries=${f.retries} rss_before_kb=${f.rssBefore} rss_after_kb=${f.rssAfter}` +
    (f.problems.length ? ` PROBLEMS=${f.problems.length}` : '');
}

/* Record what a case's fault did (one line: restarts, kills, drops, seed...). */
export function recordNote(caseName, text, seconds) {
  notes.push({caseName, text, seconds});
  return `fault ${caseName}: ${text} (${seconds.toFixed(1)} s)`;
}

/* Add text to what a case did (a figure known only after its clients were checked). */
export function appendNote(caseName, text) {
  const note = notes.find(n => n.caseName === caseName);
  if (note) note.text += `; ${text}`;
  return `fault ${caseName}: ${text}`;
}

/* The run as Markdown: a table of the figures, then what each case did. */
export function reportMarkdown(header) {
  const lines = [`# comet fault suite`, '', header, '',
    '| case | client | sent | received | duplicates | gaps (seqs) | wire duplicates | sessions | retries | bridge RSS before → after (kB) | result |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.caseName} | ${r.client} | ${r.sent} | ${r.received} | ${r.duplicates} | ` +
      `${r.gaps} (${r.gapSeqs}) | ${r.wireDuplicates} | ${r.sessions} | ${r.retries} | ` +
      `${r.rssBefore} → ${r.rssAfter} | ${r.problems.length ? `**${r.problems.length} problems**: ` +
      r.problems.slice(0, 3).join('; ').replace(/\|/g, '\\|') : 'ok'} |`);
  }
  lines.push('', '## What each case did', '');
  for (const n of notes) lines.push(`- **${n.caseName}** (${n.seconds.toFixed(1)} s): ${n.text}`);
  return lines.join('\n') + '\n';
}

/* Write the Markdown report into $COMET_ARTIFACTS_FAULT (if set); returns its path or null. */
export function writeReport(header) {
  const dir = process.env.COMET_ARTIFACTS_FAULT;
  if (!dir || !rows.length) return null;
  mkdirSync(dir, {recursive: true});
  const file = path.join(dir, 'fault-cases.md');
  writeFileSync(file, reportMarkdown(header));
  return file;
}
