// The rules table: sortable, filterable, one page of rows in the document at a time,
// so 10,000 rules stay quick (filtering runs over precomputed lowercase strings).
import {count, el} from "./dom.js";
import {matchText} from "./model.js";

const PAGE_SIZE = 100;
const NUMERIC = new Set(["rule_num", "priority", "packets", "bytes"]);
const FIELDS = ["rule_num", "name", "router", "priority", "match", "action", "policy",
                "applied_to", "enabled"];

function ruleRow(config, rule) {
  return {
    id: rule.id, rule_num: rule.rule_num, name: rule.name,
    router: config.name("routers", rule.router), priority: rule.priority,
    match: matchText(rule.match), action: rule.action,
    policy: rule.policy ? config.name("policies", rule.policy) : "",
    applied_to: rule.applied_to.map(i => config.name("interfaces", i)).join(", "),
    enabled: rule.enabled ? "yes" : "no",
  };
}

// The lowercase strings a filter reads, made on the first filter that needs them.
function searchable(row) {
  if (!row.fields) {
    row.fields = Object.fromEntries(FIELDS.map(f => [f, String(row[f]).toLowerCase()]));
    row.text = FIELDS.map(f => row.fields[f]).join(" ");
  }
  return row;
}

// "web action:redirect applied_to:uplink1" -> a predicate on rows.
function predicate(filter) {
  const terms = filter.toLowerCase().split(/\s+/).filter(Boolean).map(term => {
    const colon = term.indexOf(":");
    const field = colon > 0 ? term.slice(0, colon) : null;
    return FIELDS.includes(field) ? [field, term.slice(colon + 1)] : [null, term];
  });
  return row => !terms.length || terms.every(([field, value]) =>
    (field ? searchable(row).fields[field] : searchable(row).text).includes(value));
}

export class RulesTable {
  constructor(root) {
    this.root = root;
    this.rows = [];
    this.shown = [];
    this.hits = new Map();
    this.sortKey = "priority";
    this.descending = true;
    this.page = 0;
    this.filter = root.querySelector("#rule-filter");
    this.filter.addEventListener("input", () => { this.page = 0; this.update(); });
    root.querySelector("#rule-prev").addEventListener("click", () => this.turn(-1));
    root.querySelector("#rule-next").addEventListener("click", () => this.turn(1));
    for (const th of root.querySelectorAll("th[data-key]")) {
      th.addEventListener("click", () => this.sortBy(th.dataset.key));
    }
  }

  load(config) {
    this.rows = config.all("rules").map(r => ruleRow(config, r));
    this.update();
  }

  setHits(stats) {
    this.hits = new Map(stats.rules.map(r => [r.name, r]));
    if (this.sortKey === "packets" || this.sortKey === "bytes") this.update();
    else this.render();
  }

  value(row, key) {
    if (key === "packets" || key === "bytes") return (this.hits.get(row.name) || {})[key] || 0;
    return row[key];
  }

  sortBy(key) {
    this.descending = key === this.sortKey ? !this.descending : NUMERIC.has(key);
    this.sortKey = key;
    this.update();
  }

  turn(step) {
    const last = Math.max(0, Math.ceil(this.shown.length / PAGE_SIZE) - 1);
    this.page = Math.min(last, Math.max(0, this.page + step));
    this.render();
  }

  // Filter and sort, then render.
  update() {
    const keep = predicate(this.filter.value);
    const key = this.sortKey;
    const sign = this.descending ? -1 : 1;
    const keyed = this.rows.filter(keep).map(row => [this.value(row, key), row]);
    keyed.sort(([a, ra], [b, rb]) => (a < b ? -sign : a > b ? sign : ra.rule_num - rb.rule_num));
    this.shown = keyed.map(([, row]) => row);
    this.render();
  }

  render() {
    const pages = Math.max(1, Math.ceil(this.shown.length / PAGE_SIZE));
    this.page = Math.min(this.page, pages - 1);
    const start = this.page * PAGE_SIZE;
    const body = this.root.querySelector("tbody");
    body.replaceChildren(...this.shown.slice(start, start + PAGE_SIZE).map(r => this.tr(r)));
    const counter = this.root.querySelector("#rule-count");
    counter.dataset.shown = this.shown.length;
    counter.dataset.total = this.rows.length;
    counter.textContent = `${count(this.shown.length)} of ${count(this.rows.length)} rules`;
    this.root.querySelector("#rule-page").textContent = `page ${this.page + 1} / ${pages}`;
    for (const th of this.root.querySelectorAll("th[data-key]")) {
      th.className = th.dataset.key === this.sortKey ? (this.descending ? "desc" : "asc") : "";
    }
  }

  tr(row) {
    const hit = this.hits.get(row.name) || {packets: 0, bytes: 0};
    const action = row.policy ? `${row.action} → ${row.policy}` : row.action;
    const state = [hit.packets ? "hot" : "", row.enabled === "no" ? "disabled" : ""];
    return el("tr", {"data-rule": row.name, class: state.join(" ").trim() || null},
              el("td", {}, row.rule_num), el("td", {}, row.name), el("td", {}, row.router),
              el("td", {class: "num"}, row.priority), el("td", {class: "match"}, row.match),
              el("td", {class: `action action-${row.action}`}, action),
              el("td", {}, row.applied_to),
              el("td", {class: "num hits"}, count(hit.packets)),
              el("td", {class: "num"}, count(hit.bytes)));
  }
}
