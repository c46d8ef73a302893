"""The configuration service: every change goes candidate -> checks -> store -> switches.

REST handlers and the config loader call this; it never talks OpenFlow.  A
change is applied to a copy of the model, checked whole, committed to SQLite in
one transaction, and only then made current and announced (``on_change``, which gets
the pipelines the check compiled, so a push does not compile them again), so a
rejected request changes neither the store nor the switch.

Writers hold one lock (a green one under the app, see ``progress.Sharing``).  A
whole-config change parses, checks and compiles its candidate beside the controller's
green threads while holding it: readers go on answering from the current model, which
the change replaces only once it is checked, compiled and stored.

A change of single objects (create, update, delete) costs what it touches: numbers,
checks, applied_to set codes and store rows of those objects alone, and for rules a compile
of the changed rules and the flows that are no rule's (``SplitPipeline``, kept per
switch from its last whole compile), not of every rule.
"""
from __future__ import annotations

import dataclasses
import gc
import time
from typing import Any, Callable

from openflow_tables.compile import Pipeline, SplitPipeline, compile_pipeline
from openflow_tables.context import Context, Generations
from openflow_tables.flow import FlowError
from openflow_tables.layout import NSH_FIRST_SI
from ryu_si.control.progress import Phase, Sharing, call_here
from ryu_si.control.store import Store
from si_model import flowprog
from si_model import model as m
from si_model.document import model_from_document
from si_model.numbering import assign_numbers
from si_model.set_codes import applied_to_codes, from_state, to_state
from si_model.paths import ServicePath, SkipKey, SpiTable, chain_paths, probe_spis, skip_paths
from si_model.rule_index import RuleIndex
from si_model.validate import ValidationError, build, check_model, check_rules, noun

# Objects whose change can change what a rule gives an open connection at an interface
# (rules, their applied_to sets, interfaces and their classes, routers): every record
# is then classified again by its next packet.
RECLASSIFYING_KINDS = frozenset({"rules", "interfaces", "routers"})
# What a change hands its listener: the pipelines its check compiled, by dpid, with the
# port numbers each was compiled for (a push can use one only for the same ports).
Compiled = dict[int, tuple[dict[str, int], Pipeline]]
# The objects a change edits, (kind, id); None: any object may have changed.
Edited = list[tuple[str, str]] | None


class Service:
    def __init__(self, store: Store,
                 on_change: Callable[[Compiled], None] = lambda compiled: None,
                 ports_of: Callable[[int], dict[str, int] | None] = lambda dpid: None,
                 sharing: Sharing = Sharing()) -> None:
        self.store = store
        self.sharing = sharing
        self.on_change = on_change
        self.ports_of = ports_of            # a connected switch's port numbers, or None
        self.phase = Phase()                # where a change is (/health)
        self.model, self.counters, state = store.load()
        self.generations = Generations(**state.get("generations", {}))
        self.spis = SpiTable.from_dict(state.get("spis", {}))
        self.paths_admin_down: set[int] = set(state.get("paths_admin_down", []))
        self.down_nodes: frozenset[str] = frozenset()
        self.failed_paths: dict[int, ServicePath] = {}   # failed SPI -> the path as it was
        self.paths: dict[str, list[ServicePath]] = {}
        self.instructions: list[flowprog.Instruction] = [
            flowprog.Instruction(**d) for d in state.get("instructions", [])]
        stored_codes = state.get("applied_to_codes", [])
        self.learned_neighbors: dict[tuple[str, str], str] = {}
        self.flushed_epochs: dict[int, int] = dict(state.get("conntrack_flushed", []))
        self._lock = sharing.lock()                     # every writer's
        self.rule_index = RuleIndex.of(self.model)
        self._splits: dict[int, SplitPipeline] = {}     # dpid -> its pipeline by origin
        self._splits_lock = sharing.lock()              # pipeline() adds splits unlocked
        self.applied_to_codes = applied_to_codes(self.model, from_state(stored_codes))
        if to_state(self.applied_to_codes) != stored_codes:
            self._recode_classes()
        self.paths = self._compute_paths(self.model)
        self.probe_spis = self._probe_spis(self.model)
        self.skipped_nodes: set[str] = set(state.get("skipped_nodes", []))
        self.skips: dict[SkipKey, ServicePath] = {}
        self._derive_skips()
        if self.spis.to_dict() != SpiTable.from_dict(state.get("spis", {})).to_dict():
            self._save_state()                 # SPIs handed out above, kept for good

    # --- reads ----------------------------------------------------------------
    def context(self, dpid: int, ports: dict[str, int]) -> Context:
        """Everything the compiler needs for one switch, as of now."""
        return self._context(self.model, dpid, ports, self.applied_to_codes, self.paths,
                             self.probe_spis)

    def _context(self, model: m.Model, dpid: int, ports: dict[str, int], codes: dict,
                 paths: dict, probes: dict[str, int], gens: Generations | None = None,
                 skips: dict | None = None, failed: dict | None = None) -> Context:
        return Context(model, dpid, ports, codes, gens or self.generations,
                       down_nodes=self.down_nodes,
                       learned_neighbors=self.learned_neighbors, paths=paths,
                       failed_paths=self.failed_paths if failed is None else failed,
                       probe_spis=probes,
                       instructions=self.instructions,
                       skips=self.skips if skips is None else skips)

    def pipeline(self, dpid: int, ports: dict[str, int]) -> Pipeline:
        """The pipeline of one switch as of now, compiled whole (flows in the compiler's
        order, which a trace of overlapping rules reads).  The switch's split holds it
        (split anew if the model or ports changed), so the next rule change is compiled,
        and sent, as a difference from this one (which a push or reconcile just sent)."""
        model = self.model
        ctx = self.context(dpid, ports)
        pipe = compile_pipeline(ctx)
        with self._splits_lock:
            split = self._splits.get(dpid)
            if model is not self.model:
                return pipe
            if split is None or not split.fits(ctx) or split.model is not model \
                    or not split.rebase(ctx, pipe):
                self._keep_split(ctx, pipe)
            else:   # the rebased split holds this compile: out of later passes too
                gc.freeze()
        return pipe

    def _keep_split(self, ctx: Context, pipe: Pipeline) -> None:
        """Split a whole compile for the next changes."""
        self._hold_split(ctx.dpid, SplitPipeline.of(ctx, pipe))

    def _hold_split(self, dpid: int, split: SplitPipeline | None) -> None:
        """Keep a switch's split.  Its flows live on; the garbage collector is told to
        leave them (and everything before them) out of its passes: a full pass walks
        every object, which at 50,000 rules stalls a change by a second.  Compiled flows
        hold no cycles: refcounts still free them."""
        if split is None:
            self._splits.pop(dpid, None)
        else:
            self._splits[dpid] = split
        gc.collect()
        gc.freeze()

    def switch_ports(self, dpid: int | None, model: m.Model | None = None) -> dict[str, int]:
        """The port numbers a switch's pipeline is compiled with: the connected switch's
        own when it has every port the model names, else a number for each of those
        ports (what the trial compile checks, and what a trace without a switch runs on)."""
        model = model or self.model
        names = {i.port: n for n, i in enumerate(model.all("interfaces"), start=1) if i.port}
        names.update({n.port: 1000 + k for k, n in enumerate(model.all("service-nodes"))
                      if n.port})
        real = self.ports_of(dpid) if dpid is not None else None
        return dict(real) if real is not None and names.keys() <= real.keys() else names

    def find(self, kind: str, ref: str) -> Any:
        """An object by id or name, or a 404."""
        if kind not in m.KINDS:
            raise ValidationError("kind", f"unknown resource {kind!r}", 404)
        obj = self.model.get(kind, ref) or self._by_name(kind, ref)
        if obj is None:
            raise ValidationError("id", f"no {noun(kind)} {ref!r}", 404)
        return obj

    def _by_name(self, kind: str, name: str) -> Any:
        """Rules by the index (there are tens of thousands), the others by a look."""
        if kind != "rules":
            return self.model.by_name(kind, name)
        ids = self.rule_index.names.get(name)
        return self.model.get(kind, next(iter(ids))) if ids else None

    # --- writes ---------------------------------------------------------------
    def create(self, kind: str, body: Any) -> Any:
        with self._lock:
            cand = self.model.copy()
            obj = build(kind, body, cand)
            if cand.get(kind, obj.id) is not None:
                raise ValidationError("id", f"{obj.id} already exists", 409)
            cand.put(kind, obj)
            self._apply(cand, [(kind, obj.id)])
            return self.model.get(kind, obj.id)

    def update(self, kind: str, ref: str, body: Any) -> Any:
        with self._lock:
            old = self.find(kind, ref)
            cand = self.model.copy()
            cand.put(kind, build(kind, body, cand, existing=old))
            self._apply(cand, [(kind, old.id)])
            return self.model.get(kind, old.id)

    def delete(self, kind: str, ref: str) -> None:
        with self._lock:
            old = self.find(kind, ref)
            for other, obj, f in self.model.referrers(kind, old.id):
                raise ValidationError(f"{other}.{f}", f"{noun(kind)} {old.name!r} is still used by "
                                      f"{noun(other)} {obj.name!r}", 409)
            cand = self.model.copy()
            cand.remove(kind, old.id)
            self._apply(cand, [(kind, old.id)])

    def replace_config(self, doc: Any) -> dict[str, int]:
        """Make the model exactly ``doc`` (see ``si_model.document.model_from_document``)."""
        with self._lock:
            with self.phase.change():
                self._apply(self.sharing.beside(model_from_document, doc, self.model,
                                                self.counters))
            return {k: len(v) for k, v in self.model.objects.items()}

    def set_path_admin_state(self, spi: int, state: str) -> ServicePath:
        """Take one service path out of (or back into) its chain's select group."""
        with self._lock:
            path = self.path_by_spi(spi)
            if state not in ("up", "down"):
                raise ValidationError("admin_state", "must be up or down")
            down = self.paths_admin_down - {spi} | ({spi} if state == "down" else set())
            self.store.commit([], self.counters, {"paths_admin_down": sorted(down)})
            self.paths_admin_down = down
            before = self._up_paths()
            self.paths = self._compute_paths(self.model)
            self._derive_skips()
            gone = before.keys() - self._up_paths().keys()
            self.failed_paths = self._failed_after(before, self.paths, self.skips)
            # a path taken down drains like a failed one; new paths' SPIs kept for good
            self._save_state(self._bump("spi_fail") if gone else None)
            self.on_change({})
            return next((p for p in self.paths.get(path.chain, []) if p.spi == spi), path)

    def node_returning(self, spi: int, si: int) -> tuple[str | None, bool]:
        """The chain node that returned a frame with (spi, si) (hop k is reached at SI
        255 - k and decrements it once; None: no such hop), and whether it was the
        path's last hop."""
        for p in [q for ps in self.paths.values() for q in ps] + list(self.skips.values()):
            for s, hops in ((p.spi, p.hops), (p.reverse_spi, p.reverse_hops)):
                k = NSH_FIRST_SI - 1 - si
                if s == spi and 0 <= k < len(hops):
                    return hops[k], k == len(hops) - 1
        return None, False

    def path_by_spi(self, spi: int) -> ServicePath:
        for paths in self.paths.values():
            for p in paths:
                if spi in (p.spi, p.reverse_spi):
                    return p
        raise ValidationError("spi", f"no service path {spi}", 404)

    def set_generations(self, gens: Generations) -> None:
        with self._lock:
            self._save_state(generations=gens)
            self.on_change({})

    def _recode_classes(self) -> None:
        """Set codes written by nothing (a first start) or by a version that gave each
        set a bit: the interface classes may be numbered otherwise now, so records made
        before re-classify instead of comparing classes (the classification generation)."""
        gens = self._bump("classify")
        self.store.commit([], self.counters, {"applied_to_codes": to_state(self.applied_to_codes),
                                              "applied_to_bits": [],
                                              "generations": dataclasses.asdict(gens)})
        self.generations = gens

    def _save_state(self, generations: Generations | None = None) -> None:
        """Persist generations, the SPI table, the pending instructions and the nodes
        skips were asked for (their connections may be on the paths derived from them)
        together (one transaction)."""
        gens = generations or self.generations
        self.store.commit([], self.counters, {
            "generations": dataclasses.asdict(gens), "spis": self.spis.to_dict(),
            "skipped_nodes": sorted(self.skipped_nodes),
            "instructions": [i.to_dict() for i in self.instructions if i.state == "pending"]})
        self.generations = gens

    # --- conntrack epochs ---------------------------------------------------------------
    def conntrack_flush_due(self, dpid: int) -> list[int]:
        """The router zones of a switch to flush because the classification generation
        wrapped (a new epoch) since that switch was last flushed; empty if none is due.
        A switch seen for the first time is taken as current.  Called by a push, which
        may hold the app's sync lock while a change holds ours and waits for that lock:
        so it takes no lock (it reads committed state and writes only its own)."""
        seen = self.flushed_epochs.get(dpid)
        if seen is None:
            self.conntrack_flushed(dpid)
        if seen in (None, self.generations.classify_epoch):
            return []
        return sorted(r.ct_zone for r in self.model.all("routers") if r.dpid == dpid)

    def conntrack_flushed(self, dpid: int) -> None:
        """Remember (persistently: a switch away during a wrap is flushed when it is back,
        even after a controller restart) that a switch is flushed up to this epoch.  No
        lock, as above; the store commits this one state key alone."""
        self.flushed_epochs[dpid] = self.generations.classify_epoch
        self.store.commit([], {}, {"conntrack_flushed": sorted(self.flushed_epochs.items())})

    def _bump(self, which: str) -> Generations:
        """The next value of one generation (8 bits, wrapping; the classification
        generation counts on, see Generations)."""
        value = getattr(self.generations, which) + 1
        return dataclasses.replace(self.generations,
                                   **{which: value if which == "classify" else value & 0xFF})

    # --- flow programming -------------------------------------------------------------
    def program(self, body: Any, source: str = "rest") -> flowprog.Instruction:
        """Record an instruction and make every record stale: O(1) flow-mods."""
        with self._lock:
            routers = {r.id: r.id for r in self.model.all("routers")}
            routers.update({r.name: r.id for r in self.model.all("routers")})
            num = self.counters.get("instruction", 1)
            nodes = {k: n for n in self.model.all("service-nodes") for k in (n.id, n.name)}
            ins = flowprog.parse(body, num, routers, nodes, source)
            self._check_target(ins)
            self.counters = {**self.counters, "instruction": num + 1}
            for old in self.instructions:
                if old.state == "pending" and old.router == ins.router and \
                        set(old.directions()) & set(ins.directions()):
                    old.state = "superseded"       # one decision per connection
            self.instructions.append(ins)
            if ins.action == "skip":
                self.skipped_nodes.add(ins.node)
            self._derive_skips()
            self._save_state(self._bump("flow_program"))
            self.on_change({})
            return ins

    def _check_target(self, ins: flowprog.Instruction) -> None:
        """A reroute goes to an up path or a live node of the instruction's router."""
        if ins.spi is not None and not any(p.spi == ins.spi and p.state == "up"
                                           for ps in self.paths.values() for p in ps):
            raise ValidationError("spi", f"no up service path {ins.spi}", 422)
        if ins.action == "reroute" and ins.node is not None:
            node = self.model.get("service-nodes", ins.node)
            iface = node.interface or node.interface_a
            if self.model.get("interfaces", iface).router != ins.router:
                raise ValidationError("node", f"{node.name!r} serves another router", 422)
            if node.admin_state != "up" or node.id in self.down_nodes:
                raise ValidationError("node", f"{node.name!r} is down", 409)

    def executed(self, nums: set[int]) -> None:
        """The flows of these instructions have carried a packet: they are done."""
        with self._lock:
            hit = [i for i in self.instructions if i.num in nums and i.state == "pending"]
            for i in hit:
                i.state, i.executed = "executed", time.time()
            if hit:
                self._save_state()
                self.on_change({})

    # --- liveness ----------------------------------------------------------------------
    GENERATION_OF = {"biw": "bfd", "chain": "spi_fail", "l3": "sn"}

    def set_node_state(self, node_id: str, up: bool) -> None:
        """A node went down or came back: paths, failed paths and its generation follow.

        A path that goes down keeps the backups it had while up: its connections move
        to the first of them still up (revalidate), not to a fresh hash."""
        with self._lock:
            node = self.model.get("service-nodes", node_id)
            down = self.down_nodes - {node_id} if up else self.down_nodes | {node_id}
            if node is None or down == self.down_nodes:
                return
            before = self._up_paths()
            self.down_nodes = frozenset(down)
            self.paths = self._compute_paths(self.model)
            self._derive_skips()
            self.failed_paths = self._failed_after(before, self.paths, self.skips)
            self._save_state(self._bump(self.GENERATION_OF[node.transport]))
            self.on_change({})

    def _up_paths(self, paths: dict | None = None, skips: dict | None = None
                  ) -> dict[int, ServicePath]:
        """SPI -> every up path, and every path a skip derived from one."""
        ups = [p for ps in (self.paths if paths is None else paths).values() for p in ps
               if p.state == "up"]
        return {p.spi: p for p in ups + list((self.skips if skips is None else skips).values())}

    def _failed_after(self, before: dict[int, ServicePath], paths: dict, skips: dict
                      ) -> dict[int, ServicePath]:
        """The failed paths once ``paths`` and ``skips`` replace the current ones: every
        path that was up and is not any more (a node failed, an operator took it down, a
        change removed it), until it is up again.  Their connections go to a backup."""
        after = self._up_paths(paths, skips)
        return {spi: path for spi, path in (self.failed_paths | before).items()
                if spi not in after}

    def _derive_skips(self) -> None:
        self.skips = self._skips_of(self.model, self.paths)

    def _skips_of(self, model: m.Model, paths: dict[str, list[ServicePath]]
                  ) -> dict[SkipKey, ServicePath]:
        """The paths skips move connections to: every up path through skipped nodes,
        without them (SPIs allocated once, so records keep their meaning).  A derived
        path whose own nodes are all live stays when its path goes down (the node that
        failed may be the one it skips); its connections move only when one of its own
        nodes fails, like any path's."""
        skipped = {n for n in self.skipped_nodes if model.get("service-nodes", n)}
        fresh = {k: v for ps in paths.values() for p in ps if p.state == "up"
                 for k, v in skip_paths(p, skipped, self.spis.allocate).items()}
        kept = {k: v for k, v in self.skips.items()
                if k not in fresh and model.get("chains", v.chain) is not None
                and all(self._node_live(model, n) for n in v.node_ids)}
        return {**kept, **fresh}

    def _node_live(self, model: m.Model, node_id: str) -> bool:
        node = model.get("service-nodes", node_id)
        return node is not None and node.admin_state == "up" and node_id not in self.down_nodes

    def _probe_spis(self, model: m.Model) -> dict[str, int]:
        return probe_spis(model, self.spis)

    def learn_neighbor(self, iface_id: str, ip: str, mac: str) -> bool:
        """Remember a neighbor seen in an ARP reply; True if it is new or moved."""
        with self._lock:          # a change's compile reads them beside
            if self.learned_neighbors.get((iface_id, ip)) == mac:
                return False
            self.learned_neighbors[(iface_id, ip)] = mac
            self.on_change({})
            return True

    # --- the one path every change takes ----------------------------------------
    def _apply(self, cand: m.Model, edited: Edited = None) -> None:
        """Check, compile, store, announce; the phases show in /health."""
        with self.phase.change():
            self._checked_apply(cand, edited)

    def _checked_apply(self, cand: m.Model, edited: Edited = None) -> None:
        """``edited``: the only objects ``cand`` changes (None: a whole new model, whose
        check, compile and split run beside: see ``Sharing``)."""
        counters, index, rules, changes = (self.sharing.beside if edited is None else call_here)(
            self._checked, cand, edited)
        paths, probes = self._compute_paths(cand), self._probe_spis(cand)
        skips = self._skips_of(cand, paths)
        before = self._up_paths()
        failed = self._failed_after(before, paths, skips)
        codes = self._codes(cand, index, edited)
        if any(codes.get(k, c) != c for k, c in self.applied_to_codes.items()):
            rules = None         # the sets were packed again: every rule's flows change
        gens = self.generations
        if any(kind in RECLASSIFYING_KINDS for kind, _, _ in changes):
            gens = self._bump("classify")
        if before.keys() - self._up_paths(paths, skips).keys():     # a path went: drain it
            gens = dataclasses.replace(gens, spi_fail=(gens.spi_fail + 1) & 0xFF)
        self.phase.to("compiling")
        compile_args = (cand, paths, probes, codes, gens, skips, failed, index, rules)
        if edited is None:           # a split of the model it replaces is never read
            fresh, whole = self.sharing.beside(self._trial_compile, *compile_args)
        with self._splits_lock:      # a pipeline() meanwhile splits the model it compiled
            if edited is not None:
                fresh, whole = self._trial_compile(*compile_args)
            try:
                self.store.commit(changes, counters, {
                    "spis": self.spis.to_dict(), "generations": dataclasses.asdict(gens),
                    "applied_to_codes": to_state(codes)})
            except BaseException:
                self._undo_splits(cand)
                raise
            self.model, self.counters, self.paths, self.probe_spis = cand, counters, paths, probes
            self.skips, self.failed_paths = skips, failed
            self.applied_to_codes, self.generations = codes, gens
            self.rule_index = index
            if edited is not None:
                for ctx, pipe in whole:
                    self._keep_split(ctx, pipe)
        self.phase.to("installing")
        self.on_change(fresh)
        if edited is None:
            self.sharing.later(lambda: self._split_later(whole))

    def _checked(self, cand: m.Model, edited: Edited
                 ) -> tuple[dict[str, int], RuleIndex, set[str] | None, list]:
        """Number, index and check the candidate: its counters, rule index, the rules
        it changes alone (None: more than rules), and the store rows it changes."""
        counters = self._numbers(cand, edited)
        index = self._rule_index(cand, edited)
        rules = None if edited is None or any(k != "rules" for k, _ in edited) else \
            {i for _, i in edited}
        if rules is None:
            check_model(cand)
        else:
            check_rules(cand, rules, index)
        return counters, index, rules, self._changes(cand, edited)

    def _split_later(self, whole: list[tuple[Context, Pipeline]]) -> None:
        """Split a whole-config change's compiles for the next changes, after its answer
        (at 50,000 rules x 64 interfaces the split takes seconds).  A change that comes
        first waits for the lock; a split of a model replaced meanwhile is dropped."""
        with self._lock:
            for ctx, pipe in whole:
                if ctx.model is self.model:
                    split = self.sharing.beside(SplitPipeline.of, ctx, pipe)
                    with self._splits_lock:
                        self._hold_split(ctx.dpid, split)

    def _numbers(self, cand: m.Model, edited: Edited) -> dict[str, int]:
        """Number the objects that have none.  Only edited objects can lack numbers, and
        the counters are past every number held, so numbering those alone is numbering
        the model (numbering.assign_numbers)."""
        if edited is None:
            return assign_numbers(cand, self.counters)
        mine = m.Model()
        for kind, i in edited:
            if cand.get(kind, i) is not None:
                mine.put(kind, cand.get(kind, i))
        counters = assign_numbers(mine, self.counters)
        for kind, i in edited:
            if mine.get(kind, i) is not None:
                cand.put(kind, mine.get(kind, i))
        return counters

    def _rule_index(self, cand: m.Model, edited: Edited) -> RuleIndex:
        if edited is None:
            return RuleIndex.of(cand)
        ids = [i for k, i in edited if k == "rules"]
        return self.rule_index.changed(
            [r for r in (self.model.get("rules", i) for i in ids) if r is not None],
            [r for r in (cand.get("rules", i) for i in ids) if r is not None])

    def _codes(self, cand: m.Model, index: RuleIndex, edited: Edited) -> dict:
        """The candidate's applied_to set codes (si_model.set_codes).  A set without a
        code is used by edited rules only, so those rules and one rule per other set in
        use give the same codes as every rule (a packing again sorts the sets itself)."""
        if edited is None:
            return applied_to_codes(cand, self.applied_to_codes)
        some = {}
        for ids in (ids for sets in index.sets.values() for ids in sets.values()):
            i = next(iter(ids))
            some[i] = cand.get("rules", i)
        for kind, i in edited:
            if kind == "rules" and cand.get(kind, i) is not None:
                some[i] = cand.get(kind, i)
        return applied_to_codes(m.Model({**cand.objects, "rules": some}), self.applied_to_codes)

    def _trial_compile(self, cand: m.Model, paths, probes, codes, gens: Generations,
                       skips: dict, failed: dict, index: RuleIndex, rules: set[str] | None
                       ) -> tuple[Compiled, list[tuple[Context, Pipeline]]]:
        """Compile the candidate for every switch before anything is stored: a model the
        datapath cannot hold (two flows with one match) is a 409, not a wedged store.
        Every port the model names gets a number; a connected switch that has them all
        is compiled with its own numbers, and that pipeline is the one pushed next.
        When only ``rules`` changed, a switch split by origin compiles those rules and
        the rest alone (undone if the change goes no further); the others are compiled
        whole, and those of connected switches (returned) split for the next change."""
        dpids = {d for r in cand.all("routers") for d in (r.dpid, r.service_plane_dpid) if d}
        fresh, whole = {}, []
        try:
            for dpid in dpids:
                ports = self.switch_ports(dpid, cand)
                ctx = self._context(cand, dpid, ports, codes, paths, probes, gens, skips, failed)
                pipe = self._updated(ctx, rules, index)
                if pipe is None:
                    pipe = compile_pipeline(ctx)
                    whole.append((ctx, pipe))
                if ports == self.ports_of(dpid):
                    fresh[dpid] = (ports, pipe)
        except FlowError as e:
            self._undo_splits(cand)
            raise ValidationError("config", f"the datapath cannot hold this: {e}",
                                  409) from None
        return fresh, [(ctx, pipe) for ctx, pipe in whole if ctx.dpid in fresh]

    def _updated(self, ctx: Context, rules: set[str] | None, index: RuleIndex
                 ) -> Pipeline | None:
        """The pipeline from the switch's split, if it holds the current model's."""
        split = self._splits.get(ctx.dpid)
        if rules is None or split is None or split.model is not self.model \
                or not split.fits(ctx):
            return None
        return split.update(ctx, rules, index)

    def _undo_splits(self, cand: m.Model) -> None:
        for split in list(self._splits.values()):    # a pipeline() may add one meanwhile
            if split.model is cand:
                split.undo()

    def _compute_paths(self, model: m.Model) -> dict[str, list[ServicePath]]:
        return chain_paths(model, self.spis, down=self.down_nodes,
                           admin_down=frozenset(self.paths_admin_down), previous=self.paths)

    def _changes(self, cand: m.Model, edited: Edited = None) -> list[tuple[str, str, Any]]:
        if edited is not None:
            return [(k, i, cand.get(k, i)) for k, i in edited
                    if cand.get(k, i) != self.model.get(k, i)]
        out = []
        for kind in m.KINDS:
            old, new = self.model.objects[kind], cand.objects[kind]
            out += [(kind, i, o) for i, o in new.items() if old.get(i) != o]
            out += [(kind, i, None) for i in old if i not in new]
        return out
