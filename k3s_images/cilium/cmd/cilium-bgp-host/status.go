package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	envoy_config_cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	envoy_config_endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/cilium/cilium/pkg/bgp/agent"
	"github.com/cilium/cilium/pkg/bgp/manager"
	bgptypes "github.com/cilium/cilium/pkg/bgp/types"
	"github.com/cilium/cilium/pkg/loadbalancer"
	"github.com/cilium/cilium/pkg/node"
	ciliumversion "github.com/cilium/cilium/pkg/version"
)

const (
	ciliumModule = "github.com/cilium/cilium"
	gobgpModule  = "github.com/osrg/gobgp/v3"
)

func (st *handles) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", st.serveHealthz)
	m.HandleFunc("GET /version", st.serveVersion)
	m.HandleFunc("GET /state", st.serveState)
	return m
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// /healthz: 200 once every start hook of the hive has run, 503 before that
// and while stopping.
func (st *handles) serveHealthz(w http.ResponseWriter, r *http.Request) {
	switch {
	case st.stopping.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "stopping"})
	case !st.started.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "starting"})
	default:
		writeJSON(w, http.StatusOK, map[string]any{
			"status": "ok", "node": st.nodeName,
			"uptimeSeconds": time.Since(st.startedAt).Seconds(),
		})
	}
}

type moduleVersion struct {
	Path    string         `json:"path"`
	Version string         `json:"version"`
	Sum     string         `json:"sum,omitempty"`
	Replace *moduleVersion `json:"replace,omitempty"`
}

func fromModule(m *debug.Module) *moduleVersion {
	if m == nil {
		return nil
	}
	return &moduleVersion{Path: m.Path, Version: m.Version, Sum: m.Sum, Replace: fromModule(m.Replace)}
}

// /version reports what the binary was built from (its embedded build
// information), not what it was meant to be built from.
func (st *handles) serveVersion(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{
		"node":          st.nodeName,
		"go":            runtime.Version(),
		"ciliumVersion": strings.TrimSpace(ciliumversion.Version),
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		out["main"] = bi.Main.Path
		for _, d := range bi.Deps {
			switch d.Path {
			case ciliumModule:
				out["cilium"] = fromModule(d)
			case gobgpModule:
				out["gobgp"] = fromModule(d)
			}
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			switch s.Key {
			case "-tags", "-trimpath", "CGO_ENABLED", "GOOS", "GOARCH", "GOAMD64":
				settings[s.Key] = s.Value
			}
		}
		out["build"] = settings
	}
	writeJSON(w, http.StatusOK, out)
}

// ---- /state ----

type stateDoc struct {
	Time         time.Time  `json:"time"`
	Node         nodeState  `json:"node"`
	BGP          bgpState   `json:"bgp"`
	LoadBalancer lbState    `json:"loadBalancer"`
	Envoy        envoyState `json:"envoy"`
	Errors       []string   `json:"errors,omitempty"`
}

type nodeState struct {
	Name string `json:"name"`
	// From the node's CiliumNode (spec.addresses), as the BGP control plane
	// reads it: the first InternalIP is the node IP and default router ID.
	NodeIPv4  string            `json:"nodeIPv4,omitempty"`
	Addresses []nodeAddress     `json:"ciliumNodeAddresses"`
	Labels    map[string]string `json:"ciliumNodeLabels,omitempty"`
	Found     bool              `json:"ciliumNodeFound"`
	// Cilium's LocalNode (from the k8s Node): its labels are what a
	// CiliumEnvoyConfig nodeSelector is matched against.
	LocalNodeLabels map[string]string `json:"localNodeLabels"`
	LocalNodeIPs    []string          `json:"localNodeIPs,omitempty"`
}

type nodeAddress struct {
	Type string `json:"type"`
	IP   string `json:"ip"`
}

type bgpState struct {
	Instances []bgpInstance `json:"instances"`
}

type bgpInstance struct {
	Name       string    `json:"name"`
	LocalASN   uint32    `json:"localASN"`
	RouterID   string    `json:"routerID"`
	ListenPort int32     `json:"listenPort"`
	Peers      []bgpPeer `json:"peers"`
}

type bgpPeer struct {
	Name                    string        `json:"name"`
	Address                 string        `json:"address"`
	PeerASN                 int64         `json:"peerASN,omitempty"`
	PeerPort                int64         `json:"peerPort,omitempty"`
	SessionState            string        `json:"sessionState"`
	UptimeSeconds           float64       `json:"uptimeSeconds"`
	AppliedHoldTimeSeconds  int64         `json:"appliedHoldTimeSeconds,omitempty"`
	AppliedKeepAliveSeconds int64         `json:"appliedKeepAliveSeconds,omitempty"`
	GracefulRestart         any           `json:"gracefulRestart,omitempty"`
	Families                []peerFamily  `json:"families"`
	Advertised              []advertRoute `json:"advertised"`
}

type peerFamily struct {
	Family     string `json:"family"`
	Received   uint64 `json:"received"`
	Accepted   uint64 `json:"accepted"`
	Advertised uint64 `json:"advertised"`
}

type advertRoute struct {
	Family     string   `json:"family"`
	Prefix     string   `json:"prefix"`
	Attributes []string `json:"attributes,omitempty"`
}

type lbState struct {
	Services  []lbService  `json:"services"`
	Frontends []lbFrontend `json:"frontends"`
	Backends  []lbBackend  `json:"backends"`
}

type lbService struct {
	Name             string            `json:"name"`
	Source           string            `json:"source"`
	ExtTrafficPolicy string            `json:"externalTrafficPolicy"`
	IntTrafficPolicy string            `json:"internalTrafficPolicy"`
	ProxyRedirect    *proxyRedirect    `json:"proxyRedirect"`
	PortNames        map[string]uint16 `json:"portNames,omitempty"`
}

type proxyRedirect struct {
	ProxyPort uint16   `json:"proxyPort"`
	Ports     []uint16 `json:"ports,omitempty"`
}

type lbFrontend struct {
	Service     string `json:"service"`
	Address     string `json:"address"`
	Type        string `json:"type"`
	PortName    string `json:"portName,omitempty"`
	ServicePort uint16 `json:"servicePort,omitempty"`
	Status      string `json:"status"`
	StatusError string `json:"statusError,omitempty"`
	RedirectTo  string `json:"redirectTo,omitempty"`
	// ProxyRedirected: the Service's ProxyRedirect applies to this
	// frontend's port (traffic goes to the local Envoy listener).
	ProxyRedirected bool           `json:"proxyRedirected"`
	ProxyPort       uint16         `json:"proxyPort,omitempty"`
	Backends        []lbBackendRef `json:"backends"`
}

type lbBackendRef struct {
	Address   string   `json:"address"`
	State     string   `json:"state"`
	NodeName  string   `json:"nodeName,omitempty"`
	PortNames []string `json:"portNames,omitempty"`
	Unhealthy bool     `json:"unhealthy,omitempty"`
}

type lbBackend struct {
	Address   string          `json:"address"`
	Instances []lbBackendInst `json:"instances"`
}

type lbBackendInst struct {
	Service string `json:"service"`
	lbBackendRef
	Source string `json:"source"`
}

type envoyState struct {
	CCECs []cecState `json:"cecs"`
	// What Cilium pushed to this node's (recording) xDS server.
	Pushed pushedState `json:"pushed"`
	// Warnings Cilium logged about CiliumEnvoyConfigs it ignored or
	// dropped (most recent last), and how many there were in all.
	Errors      []cecLogEntry `json:"errors"`
	ErrorsTotal uint64        `json:"errorsTotal"`
	// Full policy recalculations the CEC reconciler requested.
	PolicyTriggers uint64 `json:"policyTriggers"`
}

type cecState struct {
	Namespace        string            `json:"namespace,omitempty"`
	Name             string            `json:"name"`
	SelectsLocalNode bool              `json:"selectsLocalNode"`
	Services         any               `json:"services,omitempty"`
	BackendServices  any               `json:"backendServices,omitempty"`
	ListenerPorts    map[string]uint16 `json:"listenerPorts"`
	Listeners        []json.RawMessage `json:"listeners"`
	Clusters         []cecCluster      `json:"clusters"`
}

type cecCluster struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// EDSName is the ClusterLoadAssignment name Envoy asks for (the EDS
	// service_name, else the cluster name).
	EDSName string `json:"edsName,omitempty"`
	// EDSPushed: Cilium pushed a ClusterLoadAssignment named EDSName to
	// this node's Envoy. Cilium pushes none at all for a service without
	// selected backends, which leaves an EDS cluster without endpoints.
	EDSPushed bool `json:"edsPushed"`
	// Endpoints: the endpoint list Cilium pushed to this node's Envoy for
	// EDSName (EDS), or the cluster's inline load_assignment, as
	// address:port; empty when there is none.
	Endpoints []string        `json:"endpoints"`
	Resource  json.RawMessage `json:"resource"`
}

type pushedState struct {
	Updates   uint64              `json:"updates"`
	LastPush  *time.Time          `json:"lastPush,omitempty"`
	Listeners map[string]string   `json:"listeners"`
	Clusters  []string            `json:"clusters"`
	Endpoints map[string][]string `json:"endpoints"`
	Routes    []string            `json:"routes"`
	Secrets   []string            `json:"secrets"`
}

var pj = protojson.MarshalOptions{UseProtoNames: true}

func marshalProto(m proto.Message) json.RawMessage {
	b, err := pj.Marshal(m)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"marshalError": err.Error()})
	}
	return b
}

func claAddresses(cla *envoy_config_endpoint.ClusterLoadAssignment) []string {
	out := []string{}
	for _, le := range cla.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	return out
}

func (st *handles) serveState(w http.ResponseWriter, r *http.Request) {
	if !st.started.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "starting"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	doc := stateDoc{Time: time.Now().UTC()}
	doc.Node = st.nodeState(ctx, &doc.Errors)
	doc.BGP = st.bgpState(ctx, &doc.Errors)
	doc.LoadBalancer = st.lbState()
	doc.Envoy = st.envoyState()
	writeJSON(w, http.StatusOK, doc)
}

func (st *handles) nodeState(ctx context.Context, errs *[]string) nodeState {
	ns := nodeState{Name: st.nodeName, Addresses: []nodeAddress{}, LocalNodeLabels: map[string]string{}}
	if ln, _, found := st.localNodes.Get(st.db.ReadTxn(), node.LocalNodeQuery); found {
		if ln.Labels != nil {
			ns.LocalNodeLabels = ln.Labels
		}
		for _, a := range ln.IPAddresses {
			ns.LocalNodeIPs = append(ns.LocalNodeIPs, string(a.Type)+"="+a.IP.String())
		}
	}
	store, err := st.ciliumNode.Store(ctx)
	if err != nil {
		*errs = append(*errs, "ciliumnode store: "+err.Error())
		return ns
	}
	for _, cn := range store.List() {
		if cn.Name != st.nodeName {
			continue
		}
		ns.Found = true
		ns.Labels = cn.Labels
		if ip := cn.GetIP(false); ip != nil {
			ns.NodeIPv4 = ip.String()
		}
		for _, a := range cn.Spec.Addresses {
			ns.Addresses = append(ns.Addresses, nodeAddress{Type: string(a.Type), IP: a.IP})
		}
	}
	return ns
}

func (st *handles) bgpState(ctx context.Context, errs *[]string) bgpState {
	out := bgpState{Instances: []bgpInstance{}}
	byName := map[string]*bgpInstance{}

	// Instance identity (ASN, router ID) as the manager holds it.
	if m, ok := st.bgpMgr.(*manager.BGPRouterManager); ok {
		m.RLock()
		for name, inst := range m.BGPInstances {
			byName[name] = &bgpInstance{
				Name: name, LocalASN: inst.Global.ASN, RouterID: inst.Global.RouterID,
				ListenPort: inst.Global.ListenPort, Peers: []bgpPeer{},
			}
		}
		m.RUnlock()
	}

	peers, err := st.bgpMgr.GetPeers(ctx, &agent.GetPeersRequest{})
	if err != nil {
		*errs = append(*errs, "bgp peers: "+err.Error())
		peers = &agent.GetPeersResponse{}
	}
	legacy, err := st.bgpMgr.GetPeersLegacy(ctx)
	if err != nil {
		*errs = append(*errs, "bgp peers (legacy): "+err.Error())
	}

	families := []bgptypes.Family{
		{Afi: bgptypes.AfiIPv4, Safi: bgptypes.SafiUnicast},
		{Afi: bgptypes.AfiIPv6, Safi: bgptypes.SafiUnicast},
	}
	// instance -> neighbor name -> routes
	adverts := map[string]map[string][]advertRoute{}
	for _, fam := range families {
		res, err := st.bgpMgr.GetRoutes(ctx, &agent.GetRoutesRequest{TableType: bgptypes.TableTypeAdjRIBOut, Family: fam})
		if err != nil {
			*errs = append(*errs, fmt.Sprintf("bgp routes %s: %v", fam, err))
			continue
		}
		for _, ir := range res.Instances {
			if adverts[ir.InstanceName] == nil {
				adverts[ir.InstanceName] = map[string][]advertRoute{}
			}
			for _, rt := range ir.Routes {
				ar := advertRoute{Family: fam.String(), Prefix: rt.Prefix}
				if len(rt.Paths) > 0 {
					for _, a := range rt.Paths[0].PathAttributes {
						ar.Attributes = append(ar.Attributes, a.String())
					}
				}
				adverts[ir.InstanceName][ir.NeighborName] = append(adverts[ir.InstanceName][ir.NeighborName], ar)
			}
		}
	}

	for _, ips := range peers.Instances {
		inst := byName[ips.Name]
		if inst == nil {
			inst = &bgpInstance{Name: ips.Name, Peers: []bgpPeer{}}
			byName[ips.Name] = inst
		}
		for _, p := range ips.Peers {
			bp := bgpPeer{
				Name:          p.Name,
				Address:       p.Address.String(),
				SessionState:  p.SessionState.String(),
				UptimeSeconds: p.Uptime.Seconds(),
				Families:      []peerFamily{},
				Advertised:    adverts[ips.Name][p.Name],
			}
			if bp.Advertised == nil {
				bp.Advertised = []advertRoute{}
			}
			sort.Slice(bp.Advertised, func(i, j int) bool { return bp.Advertised[i].Prefix < bp.Advertised[j].Prefix })
			for _, f := range p.Families {
				bp.Families = append(bp.Families, peerFamily{
					Family: f.Family.String(), Received: f.ReceivedRoutes,
					Accepted: f.AcceptedRoutes, Advertised: f.AdvertisedRoutes,
				})
			}
			for _, lp := range legacy {
				if lp.PeerAddress == bp.Address && (inst.LocalASN == 0 || lp.LocalAsn == int64(inst.LocalASN)) {
					bp.PeerASN = lp.PeerAsn
					bp.PeerPort = lp.PeerPort
					bp.AppliedHoldTimeSeconds = lp.AppliedHoldTimeSeconds
					bp.AppliedKeepAliveSeconds = lp.AppliedKeepAliveTimeSeconds
					if lp.GracefulRestart != nil {
						bp.GracefulRestart = lp.GracefulRestart
					}
					break
				}
			}
			inst.Peers = append(inst.Peers, bp)
		}
		sort.Slice(inst.Peers, func(i, j int) bool { return inst.Peers[i].Address < inst.Peers[j].Address })
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out.Instances = append(out.Instances, *byName[name])
	}
	return out
}

func backendRef(be loadbalancer.BackendParams) lbBackendRef {
	state, err := be.State.String()
	if err != nil {
		state = fmt.Sprintf("unknown(%d)", be.State)
	}
	return lbBackendRef{
		Address: be.Address.String(), State: state, NodeName: be.NodeName,
		PortNames: be.PortNames, Unhealthy: be.Unhealthy,
	}
}

func (st *handles) lbState() lbState {
	w := st.lbWriter
	txn := w.ReadTxn()
	out := lbState{Services: []lbService{}, Frontends: []lbFrontend{}, Backends: []lbBackend{}}
	for svc := range w.Services().All(txn) {
		s := lbService{
			Name: svc.Name.String(), Source: string(svc.Source),
			ExtTrafficPolicy: string(svc.ExtTrafficPolicy), IntTrafficPolicy: string(svc.IntTrafficPolicy),
			PortNames: svc.PortNames,
		}
		if pr := svc.ProxyRedirect; pr != nil {
			s.ProxyRedirect = &proxyRedirect{ProxyPort: pr.ProxyPort, Ports: pr.Ports}
		}
		out.Services = append(out.Services, s)
	}
	for fe := range w.Frontends().All(txn) {
		f := lbFrontend{
			Service: fe.ServiceName.String(), Address: fe.Address.String(), Type: string(fe.Type),
			PortName: string(fe.PortName), ServicePort: fe.ServicePort,
			Status: fe.Status.Kind.String(), Backends: []lbBackendRef{},
		}
		if fe.Status.Error != nil {
			f.StatusError = *fe.Status.Error
		}
		if fe.RedirectTo != nil {
			f.RedirectTo = fe.RedirectTo.String()
		}
		if fe.Service != nil && fe.Service.ProxyRedirect.Redirects(fe.Address.Port()) {
			f.ProxyRedirected = true
			f.ProxyPort = fe.Service.ProxyRedirect.ProxyPort
		}
		if fe.Backends != nil {
			for be := range fe.Backends {
				f.Backends = append(f.Backends, backendRef(be))
			}
		}
		out.Frontends = append(out.Frontends, f)
	}
	for be := range w.Backends().All(txn) {
		b := lbBackend{Address: be.Address.String(), Instances: []lbBackendInst{}}
		for key, inst := range be.Instances.All() {
			b.Instances = append(b.Instances, lbBackendInst{
				Service: key.ServiceName.String(), lbBackendRef: backendRef(inst), Source: string(inst.Source),
			})
		}
		out.Backends = append(out.Backends, b)
	}
	return out
}

func (st *handles) envoyState() envoyState {
	x := st.xds
	x.mu.Lock()
	sortedKeys := func(keys []string) []string {
		if keys == nil {
			return []string{}
		}
		return keys
	}
	pushed := pushedState{
		Updates:   x.updates,
		Listeners: map[string]string{},
		Clusters:  sortedKeys(slices.Sorted(maps.Keys(x.clusters))),
		Endpoints: map[string][]string{},
		Routes:    sortedKeys(slices.Sorted(maps.Keys(x.routes))),
		Secrets:   sortedKeys(slices.Sorted(maps.Keys(x.secrets))),
	}
	if !x.lastPush.IsZero() {
		t := x.lastPush.UTC()
		pushed.LastPush = &t
	}
	for name, l := range x.listeners {
		sa := l.GetAddress().GetSocketAddress()
		pushed.Listeners[name] = fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
	}
	endpoints := map[string]*envoy_config_endpoint.ClusterLoadAssignment{}
	for name, cla := range x.endpoints {
		endpoints[name] = cla
		pushed.Endpoints[name] = claAddresses(cla)
	}
	x.mu.Unlock()

	out := envoyState{CCECs: []cecState{}, Pushed: pushed}
	out.Errors, out.ErrorsTotal = st.cecLog.snapshot()
	if out.Errors == nil {
		out.Errors = []cecLogEntry{}
	}
	out.PolicyTriggers = st.policy.bumps.Load()

	txn := st.db.ReadTxn()
	for cec := range st.cecs.All(txn) {
		cs := cecState{
			Namespace: cec.Name.Namespace, Name: cec.Name.Name,
			SelectsLocalNode: cec.SelectsLocalNode,
			ListenerPorts:    map[string]uint16{},
			Listeners:        []json.RawMessage{},
			Clusters:         []cecCluster{},
		}
		if cec.Spec != nil {
			if len(cec.Spec.Services) > 0 {
				cs.Services = cec.Spec.Services
			}
			if len(cec.Spec.BackendServices) > 0 {
				cs.BackendServices = cec.Spec.BackendServices
			}
		}
		for name, port := range cec.Listeners.All() {
			cs.ListenerPorts[name] = port
		}
		for _, l := range cec.Resources.Listeners {
			cs.Listeners = append(cs.Listeners, marshalProto(l))
		}
		for _, c := range cec.Resources.Clusters {
			cc := cecCluster{Name: c.Name, Type: c.GetType().String(), Resource: marshalProto(c), Endpoints: []string{}}
			if c.GetType() == envoy_config_cluster.Cluster_EDS {
				cc.EDSName = c.GetEdsClusterConfig().GetServiceName()
				if cc.EDSName == "" {
					cc.EDSName = c.Name
				}
				if cla, ok := endpoints[cc.EDSName]; ok {
					cc.EDSPushed = true
					cc.Endpoints = claAddresses(cla)
				}
			} else if la := c.GetLoadAssignment(); la != nil {
				cc.Endpoints = claAddresses(la)
			}
			cs.Clusters = append(cs.Clusters, cc)
		}
		out.CCECs = append(out.CCECs, cs)
	}
	return out
}
