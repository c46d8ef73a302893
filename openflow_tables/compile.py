"""Model -> flows and groups for one switch: the whole pipeline, as data.

Pure: the same context always gives the same flows, so the switch layer can
diff two compilations and send only the difference.
"""
from __future__ import annotations

from dataclasses import dataclass

from openflow_tables.context import Context
from openflow_tables.flow import Flow, FlowError, Group
from openflow_tables.stages import (applied_to, classify, conntrack, ingress, nat, nd, policy,
                                    revalidation, routing, service_plane, transport)


@dataclass(frozen=True)
class Pipeline:
    flows: tuple[Flow, ...]
    groups: tuple[Group, ...]

    def table(self, name: str) -> list[Flow]:
        return [f for f in self.flows if f.table == name]


def compile_pipeline(ctx: Context) -> Pipeline:
    """The router pipeline of the routers on this switch, and/or the service plane
    pipeline of the routers whose service plane this switch is."""
    flows = service_plane.service_plane_flows(ctx) + (router_flows(ctx) if ctx.routers else [])
    return Pipeline(_unique(flows), tuple(policy.policy_groups(ctx)))


def router_flows(ctx: Context) -> list[Flow]:
    return [
        *ingress.ingress_flows(ctx), *ingress.resume_flows(ctx), *ingress.arp_flows(ctx),
        *conntrack.ct_flows(), *conntrack.ct_result_flows(ctx),
        *applied_to.applied_to_flows(ctx), *applied_to.class_check_flows(ctx),
        *classify.orient_flows("orient", "classify"), *classify.classify_flows(ctx),
        *classify.orient_flows("reorient", "keep_decision"), *classify.keep_decision_flows(ctx),
        *policy.policy_flows(ctx), *conntrack.commit_flows(ctx),
        *conntrack.gen_check_flows(ctx), *conntrack.transit_done_flows(ctx), *revalidation.flow_program_flows(ctx),
        *revalidation.revalidate_flows(ctx), *transport.transport_flows(ctx),
        *routing.routing_flows(ctx), *routing.egress_si_flows(ctx),
        *routing.neighbor_flows(ctx), *routing.output_flows(ctx), *routing.cross_flows(ctx),
        *nat.nat_flows(ctx), *nd.nd_flows(ctx),
    ]


def _unique(flows: list[Flow]) -> tuple[Flow, ...]:
    """Drop exact repeats; two different flows with one key would replace each other."""
    unique = tuple(dict.fromkeys(flows))        # Flow hashes are cached: the cheap pass
    seen: dict[tuple, Flow] = {}
    for f in unique:
        other = seen.setdefault(f.key(), f)
        if other is not f:
            raise FlowError(f"two flows share table/priority/match: {f} and {other}")
    return unique
