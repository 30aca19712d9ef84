"""`lineage.html`: one self-contained page a compliance officer can open in any browser.

The graph is drawn here as inline SVG (so the page reads even with scripts off); a few lines of
inline JavaScript add the details panel and the ancestry highlight. No network request of any
kind: no fonts, no scripts, no images from elsewhere. The lineage JSON is embedded as-is.
"""

from __future__ import annotations

import html
import json
from typing import Any

COL_W = 212  # one column per round
BOX_W = 184
GLOBAL_H = 92
UPDATE_H = 40
UPDATE_GAP = 10
TOP = 34

STATUS_COLORS = {
    "verified": "#1a7f37", "failed": "#cf222e", "open": "#9a6700", "not_checked": "#6e7781",
    # a finalized round: peers attested it (and the audit recomputed it), or only the audit did
    "attested": "#1a7f37", "recomputed_only": "#0969da",
    "included": "#1a7f37", "excluded": "#6e7781", "unavailable": "#cf222e",
}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _short(sha: str | None, n: int = 12) -> str:
    return (sha or "-")[:n]


def _node(x: float, y: float, w: float, h: float, cls: str, key: str, color: str, lines: list[tuple[str, str]],
          dashed: bool = False, title: str = "") -> str:
    """A box with lines of (css class, text); `key` finds its details in the embedded JSON."""
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    out = [f'<g class="node {cls}" data-key="{_e(key)}" tabindex="0">',
           f'<title>{_e(title)}</title>' if title else "",
           f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="7" fill="#fff" stroke="{color}" stroke-width="2"{dash}/>',
           f'<rect x="{x}" y="{y}" width="6" height="{h}" rx="3" fill="{color}"/>']
    ty = y + 17
    for css, text in lines:
        out.append(f'<text x="{x + 14}" y="{ty}" class="{css}">{_e(text)}</text>')
        ty += 17 if css != "t" else 18
    out.append("</g>")
    return "".join(out)


def _task_svg(task: dict, members: dict[str, str]) -> str:
    rounds = task["rounds"]
    cols = 1 + len(rounds)
    max_updates = max([len(r["updates"]) for r in rounds] + [0])
    width = 30 + (cols - 1) * COL_W + BOX_W
    gy = TOP + 16
    uy0 = gy + GLOBAL_H + 40
    height = uy0 + max(1, max_updates) * (UPDATE_H + UPDATE_GAP) + 30
    parts = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage graph of task {task["task"]}">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/></marker></defs>']
    # column headings
    for i in range(cols):
        x = 20 + i * COL_W
        label = "genesis" if i == 0 else f"round {rounds[i - 1]['round']}"
        parts.append(f'<text x="{x}" y="{TOP - 8}" class="col">{_e(label)}</text>')
    # parent links between global models (drawn first, under the boxes)
    for i in range(1, cols):
        r = rounds[i - 1]
        x1, x2 = 20 + (i - 1) * COL_W + BOX_W, 20 + i * COL_W
        y = gy + GLOBAL_H / 2
        broken = any(f["kind"] == "parent_link" for f in r["failures"])
        color = "#cf222e" if broken else "#57606a"
        parts.append(f'<line x1="{x1}" y1="{y}" x2="{x2 - 2}" y2="{y}" stroke="{color}" stroke-width="2.5" '
                     f'marker-end="url(#arrow)" class="edge parent" data-round="{r["round"]}"/>')
    # genesis
    g = task["genesis"]
    gcolor = STATUS_COLORS.get(g["status"], "#6e7781")
    parts.append(_node(20, gy, BOX_W, GLOBAL_H, "global", f"t{task['task']}-r0", gcolor, [
        ("t", "genesis model"),
        ("m", f"sha {_short(g['sha256'], 16)}"),
        ("s", f"rule {task['rule']}"),
        ("s", "✓ sha256 matches the chain" if g["status"] == "verified" else f"✗ {g['status']}"),
    ], title=g["sha256"]))
    # rounds
    for i, r in enumerate(rounds, start=1):
        x = 20 + i * COL_W
        key = f"t{task['task']}-r{r['round']}"
        color = STATUS_COLORS.get(r["assurance"], "#6e7781")
        attempts = r["attempts"]
        failed = [a for a in attempts if a["outcome"] not in ("finalized", "pending")]
        if r["global"]:
            agreed = r["attested_by"]
            verdict = {"attested": "✓ attested · recomputed", "recomputed_only": "✓ recomputed by the audit only",
                       "failed": f"✗ {r['failures'][0]['kind'] if r['failures'] else ''}",
                       "not_checked": "not checked"}.get(r["assurance"], r["assurance"])
            lines = [("t", f"global model · round {r['round']}"),
                     ("m", f"sha {_short(r['global']['sha256'], 16)}"),
                     ("s", f"leader {r['leader_name']}" + (f" · {len(attempts)} attempts" if len(attempts) > 1 else "")),
                     ("s", ("attested by " + ", ".join(agreed)) if agreed else "no peer attested it")]
            title = r["global"]["sha256"]
        else:
            verdict = "open"
            lines = [("t", f"round {r['round']} · in progress"), ("s", f"{len(r['updates'])} updates submitted")]
            title = "round in progress"
        lines.append(("v" if r["status"] != "failed" else "vf", verdict))
        parts.append(_node(x, gy, BOX_W, GLOBAL_H + 16, f"global round r{r['round']}", key, color, lines,
                           dashed=not r["global"], title=title))
        if failed:
            chips = ", ".join(f"{a['leader_name']} {a['outcome'].replace('_', ' ')}" for a in failed)
            parts.append(f'<text x="{x}" y="{gy - 4 + GLOBAL_H + 36}" class="chip">failed: {_e(chips)}</text>')
        # updates, joined to their global model by a spine
        ups = r["updates"]
        if ups:
            spine_x = x + 12
            last_y = uy0 + (len(ups) - 1) * (UPDATE_H + UPDATE_GAP) + UPDATE_H / 2
            parts.append(f'<line x1="{spine_x}" y1="{gy + GLOBAL_H + 16}" x2="{spine_x}" y2="{last_y}" '
                         f'stroke="#8c959f" stroke-width="1.5" class="edge spine" data-round="{r["round"]}"/>')
        for j, u in enumerate(ups):
            uy = uy0 + j * (UPDATE_H + UPDATE_GAP)
            ucolor = STATUS_COLORS.get(u["status"], "#6e7781")
            parts.append(f'<line x1="{x + 12}" y1="{uy + UPDATE_H / 2}" x2="{x + 28}" y2="{uy + UPDATE_H / 2}" '
                         f'stroke="#8c959f" stroke-width="1.5"/>')
            tag = {"included": "", "excluded": f" · excluded: {u['reason']}", "unavailable": " · UNAVAILABLE",
                   "not_checked": ""}.get(u["status"], "")
            parts.append(_node(x + 28, uy, BOX_W - 28, UPDATE_H, f"update round r{r['round']} {u['status']}",
                               f"{key}-u{j}", ucolor,
                               [("u", f"{u['name']} · {u['num_samples']:,} samples{tag}"),
                                ("m", f"sha {_short(u['sha256'], 14)}")],
                               dashed=u["status"] != "included", title=u["sha256"]))
    parts.append("</svg>")
    return "".join(parts)


def _attestation_cell(task: dict, r: dict) -> str:
    """Who attested the finalized attempt, against what the task asked."""
    fin = next((a for a in r["attempts"] if a["outcome"] == "finalized"), None)
    votes = ", ".join(x["name"] + (" ✓" if x["agree"] else " ✗") for x in (fin or {}).get("attestations", []))
    if not r["global"]:
        return votes or "-"
    asked, quorum = task["verifiers_per_round"], task["quorum"]
    if asked == 0:
        return "none asked (the task trusts its leader)"
    met = len(r["attested_by"]) >= quorum
    return f"{votes or 'none'} — quorum {quorum} of {asked} {'met' if met else 'NOT met'}"


def _checked_cell(r: dict) -> str:
    if r["status"] == "failed":
        return "<br>".join(f"✗ {_e(f['kind'])}: {_e(f['subject'])}: {_e(f['message'])}" for f in r["failures"])
    text = {"attested": f"✓ attested by {', '.join(r['attested_by'])}; recomputed by the audit ({r['match']})",
            "recomputed_only": f"✓ recomputed by the audit only ({r['match']}); no peer attested it",
            "not_checked": "not checked", "open": "open"}.get(r["assurance"], r["assurance"])
    return _e(text)


def _round_table(task: dict) -> str:
    rows = []
    for r in task["rounds"]:
        attempts = "; ".join(f"{a['leader_name']} (epoch {a['epoch']}, attempt {a['attempt']}): "
                             f"{a['outcome'].replace('_', ' ')}" + (f" — {a['note']}" if a["note"] else "")
                             for a in r["attempts"]) or "-"
        contributors = ", ".join(f"{u['name']} {u['num_samples']:,}"
                                 for u in sorted(r["updates"], key=lambda u: u["name"]) if u["status"] == "included")
        missing = "; ".join(f"{m['name']}: {m['why']}" for m in r["missing"]) or "-"
        glob = r["global"] or {}
        when = f"{r['opened_at'] or '-'}<br>{r['finalized_at'] or 'not finalized'}"
        rows.append(
            f'<tr class="{_e(r["status"])} {_e(r["assurance"])}" data-key="t{task["task"]}-r{r["round"]}"><td>{r["round"]}</td>'
            f'<td class="when">{when}</td>'
            f'<td class="mono">{_e(_short(r["parent_sha256"], 16))}</td>'
            f'<td class="mono">{_e(_short(glob.get("sha256"), 16))}<br><span class="cid">{_e(glob.get("cid") or "")}</span></td>'
            f'<td>{_e(r["leader_name"] or "-")}</td><td>{_e(attempts)}</td>'
            f'<td>{_e(contributors or "-")}<br><span class=dim>{r["samples"]:,} samples in this round</span></td>'
            f'<td>{_e(missing)}</td>'
            f'<td>{_e(_attestation_cell(task, r))}</td>'
            f'<td class="verdict">{_checked_cell(r)}</td></tr>')
    return ('<table class="rounds"><thead><tr><th>round</th><th>opened / finalized</th><th>parent</th>'
            '<th>global model</th><th>leader</th><th>attempts</th><th>contributors (samples claimed)</th>'
            '<th>missing, and why</th><th>attestations</th><th>checked by</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _contributions(task: dict) -> str:
    per: dict[str, dict] = {}
    for r in task["rounds"]:
        for u in r["updates"]:
            o = per.setdefault(u["member"], {"name": u["name"], "rounds": [], "samples": [], "excluded": 0})
            if u["status"] == "included":
                o["rounds"].append(r["round"])
                o["samples"].append(u["num_samples"])
            elif u["status"] in ("excluded", "unavailable"):
                o["excluded"] += 1

    def per_round(samples: list[int]) -> str:
        if not samples:
            return "-"
        lo, hi = min(samples), max(samples)
        return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"

    rows = "".join(f'<tr><td>{_e(o["name"])}</td><td class="mono">{_e(m)}</td><td>{_e(", ".join(map(str, o["rounds"])) or "-")}</td>'
                   f'<td>{per_round(o["samples"])}</td><td>{o["excluded"]}</td></tr>'
                   for m, o in sorted(per.items(), key=lambda kv: kv[1]["name"]))
    return ('<table class="orgs"><thead><tr><th>organisation</th><th>address</th><th>rounds contributed</th>'
            f'<th>samples claimed per round</th><th>excluded updates</th></tr></thead><tbody>{rows}</tbody></table>')


CSS = """
:root { --fg:#1f2328; --dim:#57606a; --line:#d0d7de; --ok:#1a7f37; --bad:#cf222e; --warn:#9a6700; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: #f6f8fa; }
header { padding: 18px 28px 12px; background: #fff; border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0 0 6px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
.verdict-banner { display: inline-block; padding: 6px 12px; border-radius: 6px; font-weight: 600; margin: 6px 0; }
.verdict-banner.ok { background: #dafbe1; color: var(--ok); border: 1px solid #aceebb; }
.verdict-banner.bad { background: #ffebe9; color: var(--bad); border: 1px solid #ffcecb; }
.meta { color: var(--dim); font-size: 12.5px; }
.meta span { margin-right: 16px; }
main { padding: 12px 28px 28px; }
.content { min-width: 0; }
.scroll { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 6px; }
aside { display: none; position: fixed; right: 18px; top: 18px; width: 380px; background: #fff;
        border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; font-size: 12.5px;
        max-height: calc(100vh - 36px); overflow: auto; box-shadow: 0 8px 24px rgba(140,149,159,.35); }
aside.open { display: block; }
aside button { float: right; border: 1px solid var(--line); background: #f6f8fa; border-radius: 6px; cursor: pointer; }
aside h3 { margin: 0 0 8px; font-size: 14px; }
aside dl { margin: 0; display: grid; grid-template-columns: 92px 1fr; gap: 3px 8px; }
aside dt { color: var(--dim); } aside dd { margin: 0; word-break: break-all; }
.mono, .m, aside dd.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; font-size: 12px; fill: #1f2328; }
svg text.t { font-weight: 600; font-size: 12.5px; }
svg text.m { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11.5px; fill: #57606a; }
svg text.s { font-size: 11.5px; fill: #57606a; }
svg text.u { font-size: 11.5px; }
svg text.v { font-size: 11.5px; font-weight: 600; fill: #1a7f37; }
svg text.vf { font-size: 11.5px; font-weight: 600; fill: #cf222e; }
svg text.col { font-weight: 600; fill: #57606a; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
svg text.elabel { font-size: 10.5px; fill: #57606a; }
svg text.chip { font-size: 10.5px; fill: #9a6700; }
.node { cursor: pointer; }
.node:hover rect:first-of-type, .node:focus rect:first-of-type { filter: drop-shadow(0 1px 3px rgba(0,0,0,.25)); }
.node.selected rect:first-of-type { stroke-width: 3.5; }
.dimmed { opacity: .22; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 12.5px; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr.failed td.verdict { color: var(--bad); } tr.attested td.verdict { color: var(--ok); }
tr.recomputed_only td.verdict { color: #0969da; } td.when { white-space: nowrap; font-size: 12px; color: var(--dim); }
.cid { color: var(--dim); font-size: 11px; word-break: break-all; }
.dim { color: var(--dim); }
.legend { color: var(--dim); font-size: 12px; margin: 6px 2px; }
.legend b { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 12px; vertical-align: -1px; }
.failures li { color: var(--bad); }
@media print { aside { display: none; } body { background: #fff; } .scroll { overflow: visible; } }
"""

JS = r"""
(function () {
  var data = JSON.parse(document.getElementById('lineage-data').textContent);
  var index = {};
  data.tasks.forEach(function (t) {
    index['t' + t.task + '-r0'] = {kind: 'genesis model', task: t.task, round: 0, sha256: t.genesis.sha256,
      cid: t.genesis.cid, status: t.genesis.status, rule: t.rule};
    t.rounds.forEach(function (r) {
      var g = r.global || {};
      var fails = r.failures.map(function (f) { return f.kind + ': ' + f.subject + ': ' + f.message; });
      index['t' + t.task + '-r' + r.round] = {kind: 'global model', task: t.task, round: r.round, status: r.status,
        sha256: g.sha256, cid: g.cid, parent: r.parent_sha256, leader: (r.leader_name || '') + ' ' + (r.leader || ''),
        recomputed: r.recomputed_sha256, match: r.match, failures: fails.join('\n'), notes: r.notes.join('\n'),
        attempts: r.attempts.map(function (a) { return a.leader_name + ': ' + a.outcome; }).join(', ')};
      r.updates.forEach(function (u, j) {
        index['t' + t.task + '-r' + r.round + '-u' + j] = {kind: 'update', task: t.task, round: r.round,
          member: u.name + ' ' + u.member, samples: u.num_samples, sha256: u.sha256, cid: u.cid,
          status: u.status, reason: u.reason, epoch: u.epoch, parent: r.parent_sha256};
      });
    });
  });
  var panel = document.getElementById('details');
  function show(key) {
    var d = index[key]; if (!d) return;
    var rows = Object.keys(d).filter(function (k) { return d[k] !== undefined && d[k] !== null && d[k] !== ''; })
      .map(function (k) {
        var mono = /sha|cid|parent|recomputed|member|leader/.test(k) ? ' class="mono"' : '';
        return '<dt>' + k + '</dt><dd' + mono + '>' + String(d[k]).replace(/&/g, '&amp;').replace(/</g, '&lt;')
          .replace(/\n/g, '<br>') + '</dd>';
      }).join('');
    panel.innerHTML = '<button type="button" id="close-details" aria-label="close">×</button><h3>' + d.kind +
      (d.round ? ' · round ' + d.round : '') + '</h3><dl>' + rows + '</dl>';
    panel.classList.add('open');
    document.getElementById('close-details').addEventListener('click', function () { panel.classList.remove('open'); });
  }
  function select(n) {
    document.querySelectorAll('.node.selected').forEach(function (x) { x.classList.remove('selected'); });
    n.classList.add('selected'); show(n.getAttribute('data-key'));
    if (n.classList.contains('global')) ancestry(n);
  }
  function ancestry(node) {
    // A global model descends from every earlier round of its task: dim everything later.
    var svg = node.closest('svg'); var m = /-r(\d+)/.exec(node.getAttribute('data-key'));
    var upto = m ? parseInt(m[1], 10) : 0;
    svg.querySelectorAll('.node, .edge').forEach(function (el) {
      var k = el.getAttribute('data-key'); var r = k ? /-r(\d+)/.exec(k) : null;
      var round = r ? parseInt(r[1], 10) : parseInt(el.getAttribute('data-round') || '0', 10);
      el.classList.toggle('dimmed', round > upto);
    });
  }
  document.querySelectorAll('.node').forEach(function (n) {
    n.addEventListener('click', function () { select(n); });
    n.addEventListener('keydown', function (e) { if (e.key === 'Enter') n.dispatchEvent(new Event('click')); });
  });
  document.querySelectorAll('svg.graph').forEach(function (svg) {
    svg.addEventListener('dblclick', function () {
      svg.querySelectorAll('.dimmed').forEach(function (x) { x.classList.remove('dimmed'); });
    });
  });
  document.querySelectorAll('tr[data-key]').forEach(function (tr) {
    tr.addEventListener('click', function () { show(tr.getAttribute('data-key')); });
  });
  // lineage.html#select=t0-r3 opens with that model selected (links from reports, headless checks).
  var m = /#select=([\w-]+)/.exec(location.hash);
  if (m) { var n = document.querySelector('.node[data-key="' + m[1] + '"]'); if (n) select(n); }
})();
"""


def render(lineage: dict) -> str:
    """The whole page for a lineage JSON document (`AuditResult.to_json()`)."""
    ok = lineage["ok"]
    first = lineage.get("first_failure")
    src = lineage.get("source", {})
    members = lineage.get("members", {})
    banner = ("<div class='verdict-banner ok'>✓ Lineage verified: every model matches its on-chain sha256, every "
              "parent link reaches genesis, every aggregate was recomputed</div>" if ok else
              f"<div class='verdict-banner bad'>✗ Lineage broken — first broken link: task {_e(first['task'])}, "
              f"{'genesis' if first['round'] == 0 else 'round ' + _e(first['round'])}: {_e(first['subject'])}: "
              f"{_e(first['message'])} [{_e(first['kind'])}]</div>")
    meta = [f"<span>contract <b class='mono'>{_e(src.get('contract', '-'))}</b></span>",
            f"<span>chain id {_e(src.get('chain_id', '-'))}</span>",
            f"<span>from block {_e(src.get('from_block', '-'))}</span>"]
    if src.get("run_dir"):
        meta.append(f"<span>run directory <span class='mono'>{_e(src['run_dir'])}</span></span>")
    if src.get("ipfs_url"):
        meta.append(f"<span>IPFS {_e(src['ipfs_url'])}</span>")
    timing = lineage.get("timing", {})
    blobs = lineage.get("blobs", {})
    meta.append(f"<span>audited {_e(lineage.get('generated_at', ''))} in {timing.get('total', 0):.1f} s "
                f"({blobs.get('count', 0)} blobs)</span>")
    sections = []
    for task in lineage["tasks"]:
        params = task["rule_params"]
        verification = task["verification"]
        verif = "bit for bit" if verification == "bit-exact" else f"within rtol {verification['rtol']:g}"
        failures = [f for f in task["failures"]] + [f for r in task["rounds"] for f in r["failures"]]
        fail_list = ("<ul class='failures'>" + "".join(
            f"<li>{'genesis' if f['round'] == 0 else 'round ' + str(f['round'])}: {_e(f['subject'])}: {_e(f['message'])} "
            f"[{_e(f['kind'])}]</li>" for f in failures) + "</ul>") if failures else ""
        done = [r for r in task["rounds"] if r["global"]]
        attested = sum(1 for r in done if len(r["attested_by"]) >= max(task["quorum"], 1))
        sections.append(
            f"<h2>Task {task['task']} — rule <span class='mono'>{_e(task['rule'])}</span> {_e(json.dumps(params))}, "
            f"verified {verif}; {len(done)} of {task['max_rounds']} rounds finalized"
            f"{' (completed)' if task['completed'] else ''}; "
            + (f"{task['verifiers_per_round']} verifiers per round asked, quorum {task['quorum']}: met in {attested} of "
               f"{len(done)} rounds" if task["verifiers_per_round"] else "no verifiers asked (the leader is trusted)")
            + f"</h2>{fail_list}"
            "<div class='legend'>Click a model for its details; clicking a global model dims everything it does not "
            "descend from (double-click the graph to reset). Updates hang under the global model they were "
            "aggregated into and were trained from the previous global model (their parent); "
            "an arrow is a parent link.<b style='background:#1a7f37'></b>attested by peers and recomputed by the audit / "
            "included<b style='background:#0969da'></b>recomputed by the audit only (no peer attested)"
            "<b style='background:#cf222e'></b>failed / "
            "unavailable<b style='background:#6e7781'></b>excluded<b style='background:#9a6700'></b>open</div>"
            f"<div class='scroll'>{_task_svg(task, members)}</div>"
            f"<h2>Rounds</h2>{_round_table(task)}<h2>Contributions</h2>{_contributions(task)}")
    payload = json.dumps(lineage, separators=(",", ":")).replace("</", "<\\/")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'\">"
        f"<title>fedledger lineage — {'verified' if ok else 'BROKEN'}</title><style>{CSS}</style></head><body>"
        f"<header><h1>fedledger model lineage</h1>{banner}<div class='meta'>{''.join(meta)}</div></header>"
        f"<main><div class='content'>{''.join(sections)}</div>"
        "<aside id='details'></aside></main>"
        f"<script type='application/json' id='lineage-data'>{payload}</script><script>{JS}</script></body></html>"
    )
