// Command cilium-bgp-host runs Cilium's own agent-side control-plane cells for
// one node against a real kube-apiserver, without Cilium's datapath:
//
//   - the BGP control plane (bgp.Cell, svcrouteconfig.Cell), with GoBGP as
//     Cilium links it (Cilium's fork, see go.mod);
//   - the load-balancer control plane (loadbalancer.ConfigCell, writer.Cell,
//     reflectors.Cell: Services and EndpointSlices into the frontend, backend
//     and service tables), without the BPF reconciler;
//   - the CiliumEnvoyConfig controller and parser (ciliumenvoyconfig.Cell),
//     with a recording stand-in for the Envoy xDS server.
//
// The cells are assembled as Cilium's pkg/bgp/test/script_test.go and
// pkg/ciliumenvoyconfig/script_test.go (v1.19.3) assemble them, with
// pkg/k8s/client's real Cell instead of the fake clientset. Everything that
// is not ours is configured through Cilium's own hive flags (also CILIUM_*
// environment variables); the node name comes from K8S_NODE_NAME as in the
// agent. Our own additions are the status server (--status-addr) and two
// DaemonConfig options under the agent's flag names (--ipam, --enable-ipv6).
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/hive/cell"
	"github.com/cilium/hive/job"
	"github.com/cilium/statedb"
	"github.com/spf13/pflag"

	daemonk8s "github.com/cilium/cilium/daemon/k8s"
	"github.com/cilium/cilium/pkg/bgp"
	"github.com/cilium/cilium/pkg/bgp/agent"
	"github.com/cilium/cilium/pkg/ciliumenvoyconfig"
	cmtypes "github.com/cilium/cilium/pkg/clustermesh/types"
	"github.com/cilium/cilium/pkg/datapath/tables"
	"github.com/cilium/cilium/pkg/datapath/tunnel"
	datapath "github.com/cilium/cilium/pkg/datapath/types"
	"github.com/cilium/cilium/pkg/endpoint/regeneration"
	"github.com/cilium/cilium/pkg/envoy"
	envoyCfg "github.com/cilium/cilium/pkg/envoy/config"
	ciliumhive "github.com/cilium/cilium/pkg/hive"
	ipamOption "github.com/cilium/cilium/pkg/ipam/option"
	k8sClient "github.com/cilium/cilium/pkg/k8s/client"
	k8sConsts "github.com/cilium/cilium/pkg/k8s/constants"
	k8sSynced "github.com/cilium/cilium/pkg/k8s/synced"
	"github.com/cilium/cilium/pkg/kpr"
	"github.com/cilium/cilium/pkg/lbipamconfig"
	"github.com/cilium/cilium/pkg/loadbalancer"
	"github.com/cilium/cilium/pkg/loadbalancer/reflectors"
	"github.com/cilium/cilium/pkg/loadbalancer/writer"
	"github.com/cilium/cilium/pkg/logging"
	"github.com/cilium/cilium/pkg/metrics"
	"github.com/cilium/cilium/pkg/node"
	nodesync "github.com/cilium/cilium/pkg/node/sync"
	nodeTypes "github.com/cilium/cilium/pkg/node/types"
	"github.com/cilium/cilium/pkg/nodeipamconfig"
	"github.com/cilium/cilium/pkg/option"
	"github.com/cilium/cilium/pkg/policy"
	"github.com/cilium/cilium/pkg/proxy/proxyports"
	"github.com/cilium/cilium/pkg/source"
	"github.com/cilium/cilium/pkg/svcrouteconfig"
)

// handles collects what the status server reads. Filled by cell.Invoke
// before the hive starts.
type handles struct {
	db         *statedb.DB
	bgpMgr     agent.BGPRouterManager
	lbWriter   *writer.Writer
	cecs       statedb.Table[*ciliumenvoyconfig.CEC]
	ciliumNode daemonk8s.LocalCiliumNodeResource
	localNodes statedb.Table[*node.LocalNode]
	xds        *recordingXDS
	policy     *policyTriggerCounter
	cecLog     *cecLogRecorder
	nodeName   string
	started    atomic.Bool
	stopping   atomic.Bool
	startedAt  time.Time
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "cilium-bgp-host: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	// The agent takes its node name from K8S_NODE_NAME (read by
	// pkg/node/types at init); without it Cilium falls back to the
	// hostname, which is never what a lab node wants.
	if os.Getenv(k8sConsts.EnvNodeNameSpec) == "" {
		return fmt.Errorf("%s must be set to the node's name", k8sConsts.EnvNodeNameSpec)
	}

	flags := pflag.NewFlagSet("cilium-bgp-host", pflag.ContinueOnError)
	statusAddr := flags.String("status-addr", "127.0.0.1:9235", "Loopback address of the JSON status server (/version, /state, /healthz)")
	// Two of the agent's own options (same names and defaults as the
	// agent's flags), which Cilium reads from its DaemonConfig.
	ipamMode := flags.String(option.IPAM, ipamOption.IPAMClusterPool, "IPAM mode the BGP control plane assumes for PodCIDR advertisements (the agent's --ipam)")
	enableIPv6 := flags.Bool(option.EnableIPv6Name, false, "Enable IPv6 (the agent's --enable-ipv6): IPv6 frontends, ::1 Envoy listener addresses")

	st := &handles{
		xds:      newRecordingXDS(),
		policy:   &policyTriggerCounter{},
		cecLog:   newCECLogRecorder(200),
		nodeName: nodeTypes.GetName(),
	}

	// Tee Cilium's default logger (module loggers derive from it) into the
	// recorder that keeps CiliumEnvoyConfig warnings for /state. Must be
	// done before any logger is derived from it.
	logging.AddHandlers(st.cecLog)
	log := logging.DefaultSlogLogger

	// The DaemonConfig of pkg/bgp/test/script_test.go (IPAM and IPv6 set from
	// the flags below, with the agent's defaults), plus the two switches
	// the CiliumEnvoyConfig controller requires (EnableL7Proxy,
	// EnableEnvoyConfig), as pkg/ciliumenvoyconfig/script_test.go sets them.
	// Set before the hive is built: several packages read the global.
	daemonConfig := &option.DaemonConfig{
		EnableBGPControlPlane:     true,
		BGPSecretsNamespace:       "kube-system",
		BGPRouterIDAllocationMode: option.BGPRouterIDAllocationModeDefault,
		EnableIPv4:                true,
		EnableL7Proxy:             true,
		EnableEnvoyConfig:         true,
		// The agent's defaults; the local-node synchronizer parses them.
		IPv4NodeAddr: "auto",
		IPv6NodeAddr: "auto",
	}
	option.Config = daemonConfig

	h := ciliumhive.New(
		metrics.Cell,

		// BGP control plane.
		bgp.Cell,
		svcrouteconfig.Cell,

		// statedb tables the BGP cells read. They stay empty (no datapath
		// fills them): default-gateway peer discovery and interface
		// advertisements do not work here.
		cell.Provide(
			tables.NewRouteTable,
			tables.NewDeviceTable,
			tables.NewNodeAddressTable,
			statedb.RWTable[*tables.Route].ToTable,
			statedb.RWTable[*tables.Device].ToTable,
			statedb.RWTable[tables.NodeAddress].ToTable,
		),

		// Kubernetes: the real client (flags --k8s-kubeconfig-path,
		// --k8s-api-server-urls, ... or CILIUM_* variables), Cilium's
		// resources and tables.
		k8sClient.Cell,
		daemonk8s.ResourcesCell,
		daemonk8s.TablesCell,

		// The local node: the agent's LocalNodeStore fed by the agent's
		// LocalNodeSynchronizer (name, labels and addresses from the k8s
		// Node, as in the agent), so a CiliumEnvoyConfig nodeSelector is
		// matched against the Node's labels. The BGP tests get by with
		// node.LocalNodeStoreTestCell (no labels), the CEC parser needs the
		// local node to exist before it starts.
		node.LocalNodeStoreCell,
		nodesync.LocalNodeSyncCell,
		cell.Provide(
			func() tunnel.Config { return tunnel.NewTestConfig(tunnel.Disabled) },
			func() datapath.IPsecConfig { return ipsecOff{} },
		),
		cell.Invoke(func(*node.LocalNodeStore) {}),
		cell.Config(envoyCfg.SecretSyncConfig{}),

		// Load-balancer control plane without BPF maps.
		loadbalancer.ConfigCell,
		writer.Cell,
		reflectors.Cell,
		lbipamconfig.Cell,
		nodeipamconfig.Cell,
		cell.Provide(source.NewSources),

		cell.Provide(
			func() *option.DaemonConfig { return daemonConfig },
			func() kpr.KPRConfig { return kpr.KPRConfig{KubeProxyReplacement: true} },
		),

		// CiliumEnvoyConfig: Cilium's own cell, with what it needs from the
		// agent replaced by recording stand-ins (xDS server, iptables
		// proxy rules, policy regeneration trigger, feature metrics).
		k8sSynced.Cell,
		cell.Provide(func() k8sSynced.CRDSyncResourceNames { return k8sSynced.AgentCRDResourceNames() }),
		k8sSynced.CRDSyncCell,
		cell.Config(cmtypes.DefaultClusterInfo),
		cell.Config(envoyCfg.ProxyConfig{}),
		cell.Config(proxyports.ProxyPortsConfig{}),
		cell.Provide(
			regeneration.NewFence,
			proxyports.NewProxyPorts,
			func() envoy.XDSServer { return st.xds },
			func() datapath.IptablesManager { return iptablesStandIn{} },
			func(log *slog.Logger) *policy.Updater {
				return policy.NewUpdater(log, policyRepoStandIn{c: st.policy}, st.policy)
			},
			func() ciliumenvoyconfig.FeatureMetrics { return noFeatureMetrics{} },
		),
		cell.Invoke(func(p *proxyports.ProxyPorts) {
			// pkg/proxy's cell sets this trigger (its consumer writes the
			// proxy-ports state file, which we do not keep).
			p.Trigger = job.NewTrigger()
		}),
		ciliumenvoyconfig.Cell,

		cell.Invoke(func(
			db *statedb.DB,
			m agent.BGPRouterManager,
			w *writer.Writer,
			cecs statedb.Table[*ciliumenvoyconfig.CEC],
			cn daemonk8s.LocalCiliumNodeResource,
			ln statedb.Table[*node.LocalNode],
		) {
			st.db, st.bgpMgr, st.lbWriter, st.cecs, st.ciliumNode, st.localNodes = db, m, w, cecs, cn, ln
		}),
		cell.Invoke(func(lc cell.Lifecycle) {
			lc.Append(cell.Hook{
				OnStart: func(cell.HookContext) error {
					st.started.Store(true)
					return nil
				},
				OnStop: func(cell.HookContext) error {
					st.stopping.Store(true)
					return nil
				},
			})
		}),
	)

	h.RegisterFlags(flags)
	if err := flags.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	daemonConfig.IPAM = *ipamMode
	daemonConfig.EnableIPv6 = *enableIPv6

	host, _, err := net.SplitHostPort(*statusAddr)
	if err != nil {
		return fmt.Errorf("--status-addr: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--status-addr %q: must be a loopback IP address", *statusAddr)
	}
	ln, err := net.Listen("tcp", *statusAddr)
	if err != nil {
		return fmt.Errorf("status server: %w", err)
	}
	srv := &http.Server{Handler: st.mux(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("status server stopped", "error", err)
		}
	}()
	log.Info("cilium-bgp-host starting",
		"node", st.nodeName, "status-addr", ln.Addr().String(), "ipam", daemonConfig.IPAM,
		"enable-ipv6", daemonConfig.EnableIPv6)
	st.startedAt = time.Now()

	// hive.Run starts the cells, waits for SIGINT/SIGTERM (or a fatal
	// error from a cell) and runs Cilium's normal stop hooks.
	runErr := h.Run(log)
	// Close, not Shutdown: a status client's idle keep-alive connection
	// must not hold up the exit.
	_ = srv.Close()
	return runErr
}
