// The configuration as GET /si/v1/config answers it (references are ids), indexed
// once so every view can name what an id points to.
const PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp"};
// Field -> its short label, in the order a match reads; a field not listed keeps its name.
const MATCH_LABELS = {eth_src: "eth src", eth_dst: "eth dst", eth_type: "eth",
                      ip_proto: "", ipv4_src: "src", ipv4_dst: "dst", tp_src: "sport",
                      tp_dst: "dport"};

export class Config {
  constructor(doc) {
    this.doc = doc;
    this.byId = {};
    for (const [kind, objects] of Object.entries(doc)) {
      this.byId[kind] = new Map(objects.map(o => [o.id, o]));
    }
  }

  all(kind) {
    return this.doc[kind] || [];
  }

  get(kind, id) {
    return this.byId[kind] && this.byId[kind].get(id);
  }

  name(kind, id) {
    const o = this.get(kind, id);
    return o ? o.name : id;
  }

  interfacesOf(routerId) {
    return this.all("interfaces").filter(i => i.router === routerId);
  }

  // Distinct applied_to sets: key (sorted interface ids) -> {ids, rules}.
  appliedToSets() {
    const sets = new Map();
    for (const r of this.all("rules")) {
      const ids = [...r.applied_to].sort();
      const key = ids.join(",");
      if (!sets.has(key)) sets.set(key, {ids, rules: 0});
      sets.get(key).rules += 1;
    }
    return sets;
  }
}

function values(v) {
  return Array.isArray(v) ? v.join(",") : String(v);
}

// "tcp src 100.64.0.0/16 dport 80,443"; "any" for an empty match.
export function matchText(match) {
  const order = [...Object.keys(MATCH_LABELS),
                 ...Object.keys(match).filter(k => !(k in MATCH_LABELS)).sort()];
  const parts = [];
  for (const field of order) {
    const v = match[field];
    if (v === undefined || v === null) continue;
    if (field === "ip_proto") parts.push(PROTOCOLS[v] || `proto ${v}`);
    else parts.push(`${MATCH_LABELS[field] || field} ${values(v)}`);
  }
  return parts.join(" ") || "any";
}
