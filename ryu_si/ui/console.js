// The console: the configuration now and then, counters and liveness every refresh
// (?refresh=<seconds>, default 2), views switched by the URL's #fragment.
import * as api from "./api.js";
import {Config} from "./model.js";
import {Live, renderPaths} from "./paths.js";
import {renderRouters} from "./routers.js";
import {RulesTable} from "./rules.js";
import {bindTrace, fillInterfaces} from "./trace.js";

const VIEWS = ["routers", "rules", "paths", "trace"];
const CONFIG_EVERY = 10;      // refreshes between two reads of the whole configuration
const params = new URLSearchParams(location.search);
const REFRESH_S = Math.max(0.25, Number(params.get("refresh")) || 2);

const $ = id => document.getElementById(id);
const state = {config: null, live: null, refreshes: 0};
let rules;

function showView() {
  const view = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : VIEWS[0];
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll("#tabs a")) {
    a.classList.toggle("active", a.dataset.view === view);
  }
}

async function loadConfig() {
  state.config = new Config(await api.get("config"));
  renderRouters($("routers"), state.config);
  rules.load(state.config);
  fillInterfaces($("trace-form"), state.config);
}

async function refresh() {
  if (state.refreshes % CONFIG_EVERY === 0) await loadConfig();
  const [paths, liveness, stats] = await Promise.all(
    [api.get("service-paths"), api.get("liveness"), api.get("stats")]);
  state.live = new Live(paths, liveness, stats);
  renderPaths($("paths"), state.config, state.live);
  rules.setHits(stats);
}

async function tick() {
  try {
    await refresh();
    $("error").hidden = true;
    state.refreshes += 1;
    document.body.dataset.refreshes = state.refreshes;
    $("status").textContent = `live · every ${REFRESH_S} s · updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    $("error").textContent = `controller unreachable or refusing: ${e.message}`;
    $("error").hidden = false;
  }
  setTimeout(tick, REFRESH_S * 1000);
}

function start() {
  rules = new RulesTable($("view-rules"));
  $("token").value = api.token();
  $("token").addEventListener("input", () => api.setToken($("token").value));
  bindTrace($("trace-form"), $("trace-result"), $("trace-error"), state);
  window.addEventListener("hashchange", showView);
  showView();
  tick();
}

start();
