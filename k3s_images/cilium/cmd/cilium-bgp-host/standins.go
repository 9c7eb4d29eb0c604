package main

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	cilium "github.com/cilium/proxy/go/cilium/api"
	envoy_config_cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	envoy_config_endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	envoy_config_listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	envoy_config_route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	envoy_config_tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/cilium/cilium/pkg/completion"
	datapath "github.com/cilium/cilium/pkg/datapath/types"
	"github.com/cilium/cilium/pkg/envoy"
	"github.com/cilium/cilium/pkg/envoy/xds"
	"github.com/cilium/cilium/pkg/policy"
	"github.com/cilium/cilium/pkg/proxy/endpoint"
)

// recordingXDS stands in for Cilium's Envoy xDS server (envoy.XDSServer). It
// keeps the resources the CiliumEnvoyConfig reconciler pushes, by name, the
// way the fake in Cilium's pkg/ciliumenvoyconfig/script_test.go does, and
// acknowledges them at once (runs the port-allocation callbacks a real
// Envoy ACK would run).
type recordingXDS struct {
	mu        sync.Mutex
	listeners map[string]*envoy_config_listener.Listener
	clusters  map[string]*envoy_config_cluster.Cluster
	endpoints map[string]*envoy_config_endpoint.ClusterLoadAssignment
	routes    map[string]*envoy_config_route.RouteConfiguration
	secrets   map[string]*envoy_config_tls.Secret
	updates   uint64
	lastPush  time.Time
}

func newRecordingXDS() *recordingXDS {
	return &recordingXDS{
		listeners: map[string]*envoy_config_listener.Listener{},
		clusters:  map[string]*envoy_config_cluster.Cluster{},
		endpoints: map[string]*envoy_config_endpoint.ClusterLoadAssignment{},
		routes:    map[string]*envoy_config_route.RouteConfiguration{},
		secrets:   map[string]*envoy_config_tls.Secret{},
	}
}

func (x *recordingXDS) put(res *envoy.Resources) {
	for _, l := range res.Listeners {
		x.listeners[l.Name] = proto.Clone(l).(*envoy_config_listener.Listener)
	}
	for _, c := range res.Clusters {
		x.clusters[c.Name] = proto.Clone(c).(*envoy_config_cluster.Cluster)
	}
	for _, e := range res.Endpoints {
		x.endpoints[e.ClusterName] = proto.Clone(e).(*envoy_config_endpoint.ClusterLoadAssignment)
	}
	for _, r := range res.Routes {
		x.routes[r.Name] = proto.Clone(r).(*envoy_config_route.RouteConfiguration)
	}
	for _, s := range res.Secrets {
		x.secrets[s.Name] = proto.Clone(s).(*envoy_config_tls.Secret)
	}
}

func (x *recordingXDS) del(res *envoy.Resources) {
	for _, l := range res.Listeners {
		delete(x.listeners, l.Name)
	}
	for _, c := range res.Clusters {
		delete(x.clusters, c.Name)
	}
	for _, e := range res.Endpoints {
		delete(x.endpoints, e.ClusterName)
	}
	for _, r := range res.Routes {
		delete(x.routes, r.Name)
	}
	for _, s := range res.Secrets {
		delete(x.secrets, s.Name)
	}
}

func (x *recordingXDS) touched() {
	x.updates++
	x.lastPush = time.Now()
}

// UpsertEnvoyResources implements envoy.XDSServer.
func (x *recordingXDS) UpsertEnvoyResources(ctx context.Context, res envoy.Resources) error {
	x.mu.Lock()
	x.put(&res)
	x.touched()
	x.mu.Unlock()
	for _, l := range res.Listeners {
		if cb := res.PortAllocationCallbacks[l.Name]; cb != nil {
			cb(ctx)
		}
	}
	return nil
}

// UpdateEnvoyResources implements envoy.XDSServer.
func (x *recordingXDS) UpdateEnvoyResources(ctx context.Context, old, new envoy.Resources) error {
	x.mu.Lock()
	x.del(&old)
	x.put(&new)
	x.touched()
	x.mu.Unlock()
	// As the real server: a listener that already existed keeps its port
	// reference, only new listeners are acked.
	for _, l := range new.Listeners {
		if slices.ContainsFunc(old.Listeners, func(o *envoy_config_listener.Listener) bool { return o.Name == l.Name }) {
			continue
		}
		if cb := new.PortAllocationCallbacks[l.Name]; cb != nil {
			cb(ctx)
		}
	}
	return nil
}

// DeleteEnvoyResources implements envoy.XDSServer.
func (x *recordingXDS) DeleteEnvoyResources(ctx context.Context, res envoy.Resources) error {
	x.mu.Lock()
	x.del(&res)
	x.touched()
	x.mu.Unlock()
	for _, l := range res.Listeners {
		if cb := res.PortAllocationCallbacks[l.Name]; cb != nil {
			cb(ctx)
		}
	}
	return nil
}

// The rest of envoy.XDSServer serves the agent's policy and static
// listeners, which this process does not run.

func (x *recordingXDS) AddListener(name string, kind policy.L7ParserType, port uint16, isIngress bool, mayUseOriginalSourceAddr bool, wg *completion.WaitGroup, cb func(err error)) error {
	return nil
}
func (x *recordingXDS) AddAdminListener(port uint16, wg *completion.WaitGroup)   {}
func (x *recordingXDS) AddMetricsListener(port uint16, wg *completion.WaitGroup) {}
func (x *recordingXDS) RemoveListener(name string, wg *completion.WaitGroup) xds.AckingResourceMutatorRevertFunc {
	return func() {}
}
func (x *recordingXDS) GetNetworkPolicies(resourceNames []string) (map[string]*cilium.NetworkPolicy, error) {
	return nil, nil
}
func (x *recordingXDS) UpdateNetworkPolicy(ep endpoint.EndpointUpdater, p *policy.EndpointPolicy, wg *completion.WaitGroup) (error, func() error) {
	return nil, func() error { return nil }
}
func (x *recordingXDS) RemoveNetworkPolicy(ep endpoint.EndpointInfoSource) {}
func (x *recordingXDS) RemoveAllNetworkPolicies()                          {}

var _ envoy.XDSServer = (*recordingXDS)(nil)

// iptablesStandIn is the datapath.IptablesManager that proxyports.ProxyPorts
// installs its proxy redirect rules with. There is no datapath here: the
// rules are not installed, the ports are still allocated by Cilium's code.
type iptablesStandIn struct {
	datapath.IptablesManager // nil: any other method is a bug
}

func (iptablesStandIn) InstallProxyRules(proxyPort uint16, name string) {}
func (iptablesStandIn) SupportsOriginalSourceAddr() bool                { return false }
func (iptablesStandIn) GetProxyPorts() map[string]uint16                { return nil }
func (iptablesStandIn) InstallNoTrackRules(ip netip.Addr, port uint16)  {}
func (iptablesStandIn) RemoveNoTrackRules(ip netip.Addr, port uint16)   {}

// policyTriggerCounter counts the full policy recalculations the CEC
// reconciler asks for (listeners added or removed); there are no endpoints
// to regenerate here.
type policyTriggerCounter struct {
	bumps  atomic.Uint64
	regens atomic.Uint64
}

func (p *policyTriggerCounter) TriggerRegenerateAllEndpoints() { p.regens.Add(1) }

// policyRepoStandIn is the policy.PolicyRepository that policy.Updater
// bumps. Only BumpRevision is reachable from Updater.TriggerPolicyUpdates;
// the embedded nil interface makes any other call a loud bug.
type policyRepoStandIn struct {
	policy.PolicyRepository
	c *policyTriggerCounter
}

func (r policyRepoStandIn) BumpRevision() uint64 { return r.c.bumps.Add(1) }

// noFeatureMetrics is the agent's feature-metrics hook (pkg/metrics/features
// in the agent); a no-op here as in Cilium's own CEC tests.
type noFeatureMetrics struct{}

func (noFeatureMetrics) AddCEC()  {}
func (noFeatureMetrics) DelCEC()  {}
func (noFeatureMetrics) AddCCEC() {}
func (noFeatureMetrics) DelCCEC() {}

// ipsecOff is the datapath.IPsecConfig the local-node synchronizer asks:
// no IPsec here.
type ipsecOff struct{}

func (ipsecOff) Enabled() bool                                         { return false }
func (ipsecOff) UseCiliumInternalIP() bool                             { return false }
func (ipsecOff) DNSProxyInsecureSkipTransparentModeCheckEnabled() bool { return false }
