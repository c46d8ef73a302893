// Routers by tier (a t1 inside its t0's card), each with its interfaces and the
// applied_to sets each interface belongs to.
import {el} from "./dom.js";

function setChip(config, set) {
  const names = set.ids.map(id => config.name("interfaces", id)).sort().join(", ");
  return el("span", {class: "chip", title: `${set.rules} rule(s) are applied to these interfaces`},
            `{${names}} `, el("b", {}, `${set.rules} rule${set.rules === 1 ? "" : "s"}`));
}

function interfaceRow(config, iface, sets) {
  const carried = sets.filter(s => s.ids.includes(iface.id));
  const classify = iface.classify === null ? "by role" : (iface.classify ? "yes" : "no");
  return el("tr", {"data-interface": iface.name},
            el("td", {}, iface.name), el("td", {class: `role role-${iface.role}`}, iface.role),
            el("td", {}, iface.port || "–"), el("td", {}, iface.ip || "–"),
            el("td", {}, iface.mac || "–"), el("td", {}, classify),
            el("td", {}, iface.peer ? config.name("interfaces", iface.peer) : "–"),
            el("td", {class: "sets"},
               carried.length ? carried.map(s => setChip(config, s)) : "none"));
}

function routerCard(config, router, sets) {
  const children = config.all("routers").filter(r => r.parent === router.id);
  const facts = [router.tier, router.dpid !== null ? `dpid ${router.dpid}` : null,
                 `ct zone ${router.ct_zone}`,
                 router.parent ? `parent ${config.name("routers", router.parent)}` : null]
    .filter(Boolean).join(" · ");
  return el("div", {class: `router tier-${router.tier}`, "data-router": router.name},
    el("h2", {}, router.name, " ", el("small", {}, facts)),
    el("table", {class: "grid"},
       el("thead", {}, el("tr", {}, ["interface", "role", "port", "ip", "mac", "classify",
                                     "peer", "applied_to sets"].map(h => el("th", {}, h)))),
       el("tbody", {}, config.interfacesOf(router.id).map(i => interfaceRow(config, i, sets)))),
    children.map(c => routerCard(config, c, sets)));
}

export function renderRouters(container, config) {
  const sets = [...config.appliedToSets().values()];
  const tops = config.all("routers").filter(r => !r.parent || !config.get("routers", r.parent));
  container.replaceChildren(...tops.map(r => routerCard(config, r, sets)));
  if (!tops.length) container.append(el("p", {class: "empty"}, "no routers configured"));
}
