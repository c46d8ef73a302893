// Each policy's paths drawn router -> node(s) -> router in inline SVG: a chain's
// generated service paths hop by hop, a bump-in-the-wire or L3 node as one hop.
// Nodes are coloured by liveness, a path by the worst of its hops and its own state.
import {count, el, svg} from "./dom.js";

const STEP = 150;
const ROUTER_W = 90;
const HEIGHT = 96;
const MID = 38;

// Everything the drawing reads, refreshed together.
export class Live {
  constructor(paths, liveness, stats) {
    this.paths = paths;
    this.liveness = liveness;
    this.nodeStats = new Map(stats.nodes.map(n => [n.name, n]));
    this.pathStats = new Map(stats.paths.map(p => [p.spi, p]));
    this.down = new Set(liveness.down_nodes);
    this.failed = new Set(liveness.failed_paths.map(f => f.spi));
  }

  nodeState(node) {
    if (!node) return "unknown";
    if (node.admin_state === "down") return "admin-down";
    const probed = this.liveness.nodes[node.name];
    if (this.down.has(node.name) || (probed && !probed.up)) return "down";
    return probed ? "up" : "unknown";
  }

  pathState(sp, hopStates) {
    if (sp.admin_state === "down") return "admin-down";
    if (sp.state === "down" || this.failed.has(sp.spi) || hopStates.includes("down")) return "down";
    return hopStates.includes("unknown") ? "unknown" : "up";
  }
}

const STATE_TEXT = {"up": "live", "down": "down", "admin-down": "admin down",
                    "unknown": "not probed yet"};

function routerBox(x, label) {
  return svg("g", {class: "router-box"},
             svg("rect", {x, y: MID - 18, width: ROUTER_W, height: 36, rx: 6}),
             svg("text", {x: x + ROUTER_W / 2, y: MID + 5, "text-anchor": "middle"}, label));
}

function hopNode(x, node, name, state, stats) {
  const fwd = stats ? stats.forward.packets : 0;
  const rev = stats ? stats.reverse.packets : 0;
  return svg("g", {class: `hop state-${state}`, "data-node": name, "data-state": state},
             svg("title", {}, `${name}: ${STATE_TEXT[state]}`),
             svg("circle", {cx: x, cy: MID, r: 22}),
             svg("text", {x, y: MID + 4, "text-anchor": "middle", class: "hop-name"}, name),
             svg("text", {x, y: MID + 38, "text-anchor": "middle", class: "hop-profile"},
                 node ? `${node.profile} · ${node.transport}` : ""),
             svg("text", {x, y: MID + 53, "text-anchor": "middle", class: "counter"},
                 `→ ${count(fwd)}  ← ${count(rev)}`));
}

// One path: [router] -> hops -> [router], its edges coloured by the path's state.
export function drawPath(config, live, key, label, hopNames, router, pathState) {
  const width = 2 * ROUTER_W + (hopNames.length + 1) * STEP - 40;
  const picture = svg("svg", {width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`,
                               class: "path-svg"});
  const nodes = hopNames.map(n => config.all("service-nodes").find(s => s.name === n));
  const states = nodes.map(n => live.nodeState(n));
  const state = pathState || live.pathState({}, states);
  const xs = hopNames.map((_, k) => ROUTER_W + (k + 1) * STEP - 20);
  const stops = [ROUTER_W, ...xs, width - ROUTER_W];
  const edges = svg("g", {class: "edges"});
  for (let k = 0; k + 1 < stops.length; k++) {
    const from = stops[k] + (k ? 22 : 0);
    const to = stops[k + 1] - (k + 1 < stops.length - 1 ? 22 : 0);
    edges.append(svg("line", {x1: from, y1: MID, x2: to - 6, y2: MID}),
                 svg("path", {d: `M${to - 8},${MID - 5} L${to},${MID} L${to - 8},${MID + 5} Z`}));
  }
  picture.append(edges, routerBox(0, router), routerBox(width - ROUTER_W, router),
                 ...hopNames.map((n, k) => hopNode(xs[k], nodes[k], n, states[k],
                                                   live.nodeStats.get(n))));
  return el("div", {class: `path state-${state}`, "data-path": key, "data-state": state},
            el("div", {class: "path-label"}, label, " ",
               el("span", {class: "badge"}, STATE_TEXT[state])),
            picture);
}

function routersUsing(config, policyId) {
  const names = new Set(config.all("rules").filter(r => r.policy === policyId)
    .map(r => config.name("routers", r.router)));
  return [...names].join(", ") || "router";
}

function chainPaths(config, live, chain, router) {
  const paths = live.paths.filter(p => p.chain === chain.name);
  if (!paths.length) return [el("p", {class: "empty"}, "no path: no live set of nodes fits the chain")];
  return paths.map(sp => {
    const states = sp.hops.map(n => live.nodeState(config.all("service-nodes").find(s => s.name === n)));
    const counters = live.pathStats.get(sp.spi);
    const label = `SPI ${sp.spi} (reverse ${sp.reverse_spi}) · ${count(counters ? counters.packets : 0)} packets back from the plane`;
    return drawPath(config, live, `spi:${sp.spi}`, label, sp.hops, router,
                    live.pathState(sp, states));
  });
}

function nodePaths(config, live, nodeIds, router) {
  return nodeIds.map(id => {
    const node = config.get("service-nodes", id);
    const name = node ? node.name : id;
    return drawPath(config, live, `node:${name}`, `${node ? node.transport : ""} node ${name}`,
                    [name], router);
  });
}

function policyBlock(config, live, policy) {
  const router = routersUsing(config, policy.id);
  const chain = policy.chain && config.get("chains", policy.chain);
  const kind = chain ? `chain ${chain.name} (${chain.profiles.join(" → ")})`
    : policy.biw_nodes.length ? "bump-in-the-wire" : "L3 nodes";
  const body = chain ? chainPaths(config, live, chain, router)
    : nodePaths(config, live, [...policy.biw_nodes, ...policy.l3_nodes], router);
  return el("div", {class: "policy", "data-policy": policy.name},
            el("h2", {}, `policy ${policy.name} `,
               el("small", {}, `${kind} · failure policy ${policy.failure_policy}`)),
            body);
}

export function renderPaths(container, config, live) {
  const used = new Set(config.all("policies").map(p => p.chain).filter(Boolean));
  const blocks = config.all("policies").map(p => policyBlock(config, live, p));
  for (const chain of config.all("chains").filter(c => !used.has(c.id))) {
    blocks.push(el("div", {class: "policy", "data-chain": chain.name},
                   el("h2", {}, `chain ${chain.name} `, el("small", {}, "no policy uses it")),
                   chainPaths(config, live, chain, "router")));
  }
  if (!blocks.length) blocks.push(el("p", {class: "empty"}, "no policies or chains configured"));
  container.replaceChildren(...blocks);
}
