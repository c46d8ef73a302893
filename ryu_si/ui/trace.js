// The trace form: a connection's first packet entering at an interface, run through
// the pipeline interpreter by POST /si/v1/trace; the answer drawn as stations
// (interface, each tier's rule, policy, route, exit), the paths it may take, and the
// interpreter's walk table by table.
import * as api from "./api.js";
import {el, svg} from "./dom.js";
import {drawPath} from "./paths.js";

const BOX_W = 170;
const GAP = 34;

export function fillInterfaces(form, config) {
  const select = form.elements.interface;
  const chosen = select.value;
  select.replaceChildren(...config.all("routers").map(r => el("optgroup", {label: r.name},
    config.interfacesOf(r.id).map(i => el("option", {value: i.name}, `${i.name} (${i.role})`)))));
  const uplink = config.all("interfaces").find(i => i.role === "uplink");
  select.value = chosen || (uplink ? uplink.name : "");
}

function request(form) {
  const f = form.elements;
  const body = {interface: f.interface.value, ip_proto: f.ip_proto.value,
                ipv4_src: f.ipv4_src.value.trim(), ipv4_dst: f.ipv4_dst.value.trim()};
  if (body.ip_proto !== "icmp") {
    body.tp_src = Number(f.tp_src.value);
    body.tp_dst = Number(f.tp_dst.value);
  }
  return body;
}

function stations(r) {
  const out = [{title: `in ${r.ingress}`, detail: "ingress interface", kind: "iface"}];
  for (const t of r.tiers) {
    out.push({title: t.rule ? `rule ${t.rule.name}` : "no rule",
              detail: `${t.router} at ${t.classified_at}` + (t.rule ? ` · prio ${t.rule.priority}` : ""),
              kind: t.outcome});
  }
  if (r.policy) {
    const live = r.policy.live_paths.length
      ? r.policy.live_paths.map(p => `SPI ${p.spi}`) : r.policy.live_nodes;
    out.push({title: `policy ${r.policy.name}`,
              detail: `${r.policy.transport}: ${live.join(", ") || "nothing live"}`, kind: "policy"});
  }
  if (r.route) {
    out.push({title: `route ${r.route.prefix}`,
              detail: `via ${r.route.next_hop || "connected"} (${r.route.interface})`, kind: "route"});
  }
  out.push(r.egress ? {title: `out ${r.egress}`, detail: `outcome: ${r.outcome}`, kind: r.outcome}
    : {title: r.outcome === "drop" ? "dropped" : "to the controller",
       detail: `outcome: ${r.outcome}`, kind: r.outcome === "drop" ? "drop" : "iface"});
  return out;
}

function picture(r) {
  const list = stations(r);
  const width = list.length * (BOX_W + GAP) - GAP + 2;
  const pic = svg("svg", {width, height: 70, viewBox: `0 0 ${width} 70`, class: "trace-svg"});
  list.forEach((s, k) => {
    const x = 1 + k * (BOX_W + GAP);
    pic.append(svg("g", {class: `station kind-${s.kind}`},
      svg("rect", {x, y: 8, width: BOX_W, height: 52, rx: 8}),
      svg("text", {x: x + BOX_W / 2, y: 30, "text-anchor": "middle", class: "station-title"}, s.title),
      svg("text", {x: x + BOX_W / 2, y: 48, "text-anchor": "middle", class: "station-detail"}, s.detail)));
    if (k + 1 < list.length) {
      const a = x + BOX_W;
      pic.append(svg("path", {class: "arrow",
        d: `M${a + 4},34 L${a + GAP - 8},34 M${a + GAP - 14},28 L${a + GAP - 6},34 L${a + GAP - 14},40`}));
    }
  });
  return pic;
}

// The interpreter's walk (openflow_tables/walk.py) as rows: a pass header, a flow line
// "NN. table: match, priority P, owner", its actions, and "->" lines for what they did.
const PASS = /^pass (\d+): (.*)$/;
const STEP = /^\s*(\d+)\. (\S+): (.*), priority (\d+), (.+)$/;
const MISS = /^\s*(\d+)\. (\S+): no match: drop$/;
const EVENT = /^\s*-> (.*)$/;

export function parseWalk(lines) {
  const rows = [];
  let last = null;
  for (const line of lines) {
    let m;
    if ((m = PASS.exec(line))) rows.push(last = {pass: m[1], text: m[2]});
    else if ((m = MISS.exec(line))) rows.push(last = {id: m[1], table: m[2], match: "no match",
                                                      priority: "", owner: "", actions: "drop", events: []});
    else if ((m = STEP.exec(line))) rows.push(last = {id: m[1], table: m[2], match: m[3],
                                                      priority: m[4], owner: m[5], actions: "", events: []});
    else if ((m = EVENT.exec(line)) && last && last.events) last.events.push(m[1]);
    else if (last && last.events && !last.actions) last.actions = line.trim();
    else rows.push(last = {raw: line});
  }
  return rows;
}

function walkTable(r) {
  const names = new Map([r.rule, ...r.matched, ...r.tiers.map(t => t.rule)]
    .filter(Boolean).map(h => [`rule ${h.rule_num}`, h.name]));
  const rows = parseWalk(r.walk).map(w => {
    if (w.pass !== undefined) return el("tr", {class: "pass"}, el("th", {colspan: 6}, `pass ${w.pass}: ${w.text}`));
    if (w.raw !== undefined) return el("tr", {}, el("td", {colspan: 6, class: "mono"}, w.raw));
    const rule = names.get(w.owner);
    return el("tr", {class: rule ? "hit" : null, "data-table": w.table},
              el("td", {class: "num"}, w.id), el("td", {}, w.table),
              el("td", {class: "mono"}, w.match), el("td", {class: "num"}, w.priority),
              el("td", {}, rule ? `${w.owner} (${rule})` : w.owner),
              el("td", {class: "mono"}, w.actions, w.events.map(e => el("div", {class: "event"}, `→ ${e}`))));
  });
  return el("table", {class: "grid walk"},
            el("thead", {}, el("tr", {}, ["#", "table", "match", "priority", "flow of", "actions, then"]
              .map(h => el("th", {}, h)))),
            el("tbody", {}, rows));
}

function render(target, config, live, r) {
  const paths = r.policy ? r.policy.live_paths.map(p => drawPath(config, live, `spi:${p.spi}`,
    `SPI ${p.spi} · weight ${p.weight}`, p.hops, r.tiers.length ? r.tiers[0].router : "router")) : [];
  const nodes = r.policy && !r.policy.live_paths.length
    ? r.policy.live_nodes.map(n => drawPath(config, live, `node:${n}`, `node ${n}`, [n], r.tiers[0].router))
    : [];
  target.replaceChildren(
    el("div", {class: `trace-summary outcome-${r.outcome}`, "data-outcome": r.outcome},
       el("h2", {}, `${r.outcome}`, r.rule ? ` by rule ${r.rule.name}` : "",
          r.ambiguous ? el("span", {class: "badge warn"}, "tie: another rule has the same priority") : ""),
       picture(r)),
    paths.length || nodes.length
      ? el("div", {class: "trace-paths"}, el("h3", {}, "where the policy can send it (live now)"), paths, nodes)
      : "",
    el("p", {class: "tables"}, "tables crossed: ", r.tables.map(t => el("span", {class: "chip"}, t))),
    walkTable(r));
}

export function bindTrace(form, target, errorBox, state) {
  form.elements.ip_proto.addEventListener("change", () => {
    const ports = form.elements.ip_proto.value !== "icmp";
    form.elements.tp_src.disabled = form.elements.tp_dst.disabled = !ports;
  });
  form.addEventListener("submit", async event => {
    event.preventDefault();
    errorBox.hidden = true;
    try {
      render(target, state.config, state.live, await api.trace(request(form)));
    } catch (e) {
      errorBox.textContent = e.status === 401
        ? "401: the controller has a token; enter it in the token field above" : e.message;
      errorBox.hidden = false;
      target.replaceChildren();
    }
  });
}
