package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cilium/cilium/pkg/logging/logfields"
)

// cecLogRecorder is an slog.Handler added to Cilium's default logger
// (logging.AddHandlers). It keeps the warnings Cilium logs about
// CiliumEnvoyConfig resources it ignores or drops, since that log line is
// Cilium's only report of them:
//
//   - "Ignoring invalid CiliumEnvoyConfig JSON" (protojson decoding of one
//     xDS resource, pkg/k8s/apis/cilium.io/v2/cec_types.go);
//   - "Skipping CiliumEnvoyConfig due to malformed xDS resources" (parse or
//     Envoy proto validation, pkg/ciliumenvoyconfig/k8s_reflector.go);
//   - anything else at warning level or above from the ciliumenvoyconfig
//     module.
type cecLogRecorder struct {
	shared *cecLogShared
	attrs  []slog.Attr
	group  string
}

type cecLogShared struct {
	mu      sync.Mutex
	max     int
	entries []cecLogEntry
	total   uint64
}

type cecLogEntry struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"`
	Message string            `json:"message"`
	Attrs   map[string]string `json:"attrs"`
}

func newCECLogRecorder(max int) *cecLogRecorder {
	return &cecLogRecorder{shared: &cecLogShared{max: max}}
}

func (r *cecLogRecorder) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn
}

func (r *cecLogRecorder) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]string{}
	add := func(a slog.Attr) {
		key := a.Key
		if r.group != "" {
			key = r.group + "." + key
		}
		// The offending object is logged whole by Cilium; keep only its
		// size here (it may be large, and a CEC may carry TLS secrets).
		if a.Key == logfields.Object {
			attrs[key+"_bytes"] = fmt.Sprint(len(a.Value.String()))
			return
		}
		attrs[key] = a.Value.String()
	}
	for _, a := range r.attrs {
		add(a)
	}
	rec.Attrs(func(a slog.Attr) bool { add(a); return true })

	if !strings.Contains(rec.Message, "CiliumEnvoyConfig") && attrs[logfields.LogSubsys] != "ciliumenvoyconfig" {
		return nil
	}
	s := r.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	s.entries = append(s.entries, cecLogEntry{
		Time: rec.Time, Level: rec.Level.String(), Message: rec.Message, Attrs: attrs,
	})
	if len(s.entries) > s.max {
		s.entries = s.entries[len(s.entries)-s.max:]
	}
	return nil
}

func (r *cecLogRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *r
	n.attrs = append(append([]slog.Attr{}, r.attrs...), attrs...)
	return &n
}

func (r *cecLogRecorder) WithGroup(name string) slog.Handler {
	n := *r
	if n.group != "" {
		name = n.group + "." + name
	}
	n.group = name
	return &n
}

func (r *cecLogRecorder) snapshot() ([]cecLogEntry, uint64) {
	s := r.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]cecLogEntry{}, s.entries...), s.total
}
