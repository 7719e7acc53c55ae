package node

// Prometheus metrics for GET /metrics.
//
//  1. A scrape calls Collect on the node's collectors.
//  2. The counters collector reads every actor's atomics (stats.Counters.Counters)
//     and batch-size histogram, and the pool's gauges: loads only, no lock the
//     data path takes, no call into a protocol.
//  3. The protocol collector asks each actor's info for its own gauges
//     (stats.MetricsInfo), off the data path.
//  4. The Go runtime and process collectors add go_* and process_*.
//
// Counters are monotonic for the life of the process: the registry keeps an
// actor's counters by name, so a restarted protocol continues from where it
// failed.

import (
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"switchyard/packet"
	"switchyard/stats"
)

// MetricsNamespace prefixes every Switchyard metric.
const MetricsNamespace = "switchyard"

// metricsMaxInFlight (2 requests) bounds concurrent scrapes: a scrape is
// cheap, but a client hammering /metrics must not take the CPU forwarding
// needs.
const metricsMaxInFlight = 2

// metricsSource is what the collectors read: the actors' counters and the
// pool's gauges.
type metricsSource struct {
	actors func() []*stats.Counters
	pool   func() (PoolSnapshot, bool)
	now    func() time.Time
}

// MetricsRegistry returns a Prometheus registry holding the node's
// collectors, the Go runtime and process collectors, and build info for
// version (the string `switchyard version` prints).
func (n *Node) MetricsRegistry(version string) *prometheus.Registry {
	src := metricsSource{
		actors: n.registry.All,
		pool: func() (PoolSnapshot, bool) {
			if n.pool == nil {
				return PoolSnapshot{}, false
			}
			return PoolSnapshot{LimitBuffers: n.pool.Limit(), OutstandingBuffers: n.pool.Outstanding(),
				BufferBytes: packet.BufferBytes, AllocatedBuffers: n.pool.Allocated()}, true
		},
		now: time.Now,
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCountersCollector(src),
		protocolCollector{src},
		buildInfo(version),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// metricsHandler serves reg in the Prometheus text (or protobuf) format. A
// protocol gauge that breaks the exposition rules is logged and left out;
// the rest is still served.
func metricsHandler(reg *prometheus.Registry, log *zap.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            zap.NewStdLog(log.Named("metrics")),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: metricsMaxInFlight,
		Timeout:             AdminReadTimeout,
	})
}

// countersCollector serves the fixed per-actor metrics.
type countersCollector struct {
	src metricsSource

	packets, bytes, batches *prometheus.Desc // {actor, direction}
	drops                   *prometheus.Desc // {actor, reason}
	restarts, up            *prometheus.Desc // {actor}
	actorInfo               *prometheus.Desc // {actor, kind}
	depth, depthPackets     *prometheus.Desc // {actor}
	highWater, capacity     *prometheus.Desc // {actor}
	batchPackets            *prometheus.Desc // {actor}, histogram
	queueDelay              *prometheus.Desc // {actor}, histogram
	pool                    *prometheus.Desc // {state}
}

func newCountersCollector(src metricsSource) *countersCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(MetricsNamespace, "", name), help, labels, nil)
	}
	return &countersCollector{
		src:          src,
		packets:      d("packets_total", "Packets that arrived at (in) or left (out) an actor.", "actor", "direction"),
		bytes:        d("bytes_total", "Bytes of IP packets that arrived at (in) or left (out) an actor.", "actor", "direction"),
		batches:      d("batches_total", "Batch messages that arrived at (in) or left (out) an actor.", "actor", "direction"),
		drops:        d("drops_total", "Packets an actor dropped, by reason.", "actor", "reason"),
		restarts:     d("restarts_total", "Restarts of an actor by its supervisor.", "actor"),
		up:           d("actor_up", "1 when the actor is running, 0 while it waits to restart or after it gave up.", "actor"),
		actorInfo:    d("actor_info", "The kind of each actor (capture, router, injector, or the protocol type); always 1.", "actor", "kind"),
		depth:        d("mailbox_depth", "Batches waiting in the actor's mailbox.", "actor"),
		depthPackets: d("mailbox_depth_packets", "Packets in the batches waiting in the actor's mailbox.", "actor"),
		highWater:    d("mailbox_high_water", "The most batches the actor's mailbox has held at once.", "actor"),
		capacity:     d("mailbox_capacity", "The bound of the actor's mailbox, in batches; past it the drop policy applies.", "actor"),
		batchPackets: d("batch_packets", "Packets per batch arriving at the actor.", "actor"),
		queueDelay:   d("queue_delay_seconds", "Time a batch waited in the actor's mailbox, from enqueue to delivery.", "actor"),
		pool:         d("pool_buffers", "Packet buffers of the node's pool: in use now, allocated (the high-water mark, kept for reuse), and the limit.", "state"),
	}
}

// Describe implements prometheus.Collector.
func (c *countersCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.bytes, c.batches, c.drops, c.restarts, c.up, c.actorInfo,
		c.depth, c.depthPackets, c.highWater, c.capacity, c.batchPackets, c.queueDelay, c.pool} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *countersCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, a := range c.src.actors() {
		s := a.Load()
		name := s.Name
		counter(c.packets, s.InPackets, name, "in")
		counter(c.packets, s.OutPackets, name, "out")
		counter(c.bytes, s.InBytes, name, "in")
		counter(c.bytes, s.OutBytes, name, "out")
		counter(c.batches, s.InBatches, name, "in")
		counter(c.batches, s.OutBatches, name, "out")
		// Every reason, zeros included, so that rate() sees the first drop.
		for _, r := range stats.Reasons() {
			counter(c.drops, a.Dropped(r), name, r.String())
		}
		counter(c.restarts, s.Restarts, name)
		up := 0.0
		if s.State == stats.Running.String() {
			up = 1
		}
		gauge(c.up, up, name)
		gauge(c.actorInfo, 1, name, s.Kind)
		if m := s.Mailbox; m != nil {
			gauge(c.depth, float64(max(m.DepthBatches, 0)), name)
			gauge(c.depthPackets, float64(max(m.DepthPackets, 0)), name)
			gauge(c.highWater, float64(m.HighWaterBatches), name)
			gauge(c.capacity, float64(m.Capacity), name)
			counts, sum := a.QueueDelays()
			ch <- delayHistogram(c.queueDelay, counts, sum, name)
		}
		ch <- batchHistogram(c.batchPackets, a.BatchSizes(), s.InPackets, name)
	}
	if p, ok := c.src.pool(); ok {
		gauge(c.pool, float64(p.OutstandingBuffers), "in_use")
		gauge(c.pool, float64(p.LimitBuffers), "limit")
		gauge(c.pool, float64(p.AllocatedBuffers), "allocated")
	}
}

// batchHistogram turns per-bucket counts (stats.Counters.BatchSizes) into a
// Prometheus histogram: cumulative buckets, the count their total (the
// +Inf bucket), the sum the packets.
func batchHistogram(d *prometheus.Desc, counts [len(stats.BatchSizeBuckets) + 1]uint64, packets uint64, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(stats.BatchSizeBuckets))
	var cum uint64
	for i, le := range stats.BatchSizeBuckets {
		cum += counts[i]
		buckets[le] = cum
	}
	cum += counts[len(stats.BatchSizeBuckets)]
	return prometheus.MustNewConstHistogram(d, cum, float64(packets), buckets, labels...)
}

// delayHistogram turns the queueing delay histogram
// (stats.Counters.QueueDelays) into a Prometheus histogram in seconds.
func delayHistogram(d *prometheus.Desc, counts [stats.NumDelayBuckets]uint64, sumNanos uint64, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(stats.QueueDelayBuckets))
	var cum uint64
	for i, le := range stats.QueueDelayBuckets {
		cum += counts[i]
		buckets[float64(le)/1e9] = cum
	}
	cum += counts[len(stats.QueueDelayBuckets)]
	return prometheus.MustNewConstHistogram(d, cum, float64(sumNanos)/1e9, buckets, labels...)
}

// protocolCollector serves the protocols' own gauges (stats.MetricsInfo).
// Their names are known only at scrape time, so it is an unchecked
// collector: Describe sends nothing.
type protocolCollector struct{ src metricsSource }

// Describe implements prometheus.Collector.
func (protocolCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c protocolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.src.actors() {
		info := a.Info()
		if info == nil {
			continue
		}
		mi, ok := info.(stats.MetricsInfo)
		if !ok {
			continue
		}
		for _, g := range mi.Gauges() {
			if m, err := gaugeMetric(a.Name, g); err == nil {
				ch <- m
			} else {
				ch <- prometheus.NewInvalidMetric(prometheus.NewDesc(
					prometheus.BuildFQName(MetricsNamespace, "", "invalid"), "invalid protocol gauge", nil, nil),
					fmt.Errorf("actor %s: %w", a.Name, err))
			}
		}
	}
}

var metricName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// gaugeMetric turns a protocol's gauge into a metric with the actor label
// added.
func gaugeMetric(actor string, g stats.Gauge) (prometheus.Metric, error) {
	if !metricName.MatchString(g.Name) {
		return nil, fmt.Errorf("gauge name %q is not a metric name", g.Name)
	}
	keys := make([]string, 0, len(g.Labels)+1)
	for k := range g.Labels {
		if k == "actor" || !metricName.MatchString(k) || strings.HasPrefix(k, "__") {
			return nil, fmt.Errorf("gauge %s: label name %q is reserved or invalid", g.Name, k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	values := make([]string, 0, len(keys)+1)
	values = append(values, actor)
	for _, k := range keys {
		values = append(values, g.Labels[k])
	}
	keys = append([]string{"actor"}, keys...)
	help := g.Help
	if help == "" {
		help = "Protocol gauge " + g.Name + "."
	}
	d := prometheus.NewDesc(prometheus.BuildFQName(MetricsNamespace, "", g.Name), help, keys, nil)
	return prometheus.NewConstMetric(d, prometheus.GaugeValue, g.Value, values...)
}

// buildInfo is switchyard_build_info{version, revision, goversion} 1.
// version is the string `switchyard version` prints ("switchyard dev
// 1a2b3c4d5e6f go1.26 linux/amd64"); its second word is the version.
func buildInfo(version string) prometheus.Collector {
	v := version
	if f := strings.Fields(version); len(f) >= 2 && f[0] == "switchyard" {
		v = f[1]
	}
	revision := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				revision = s.Value
			}
		}
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace:   MetricsNamespace,
		Name:        "build_info",
		Help:        "The running switchyard's version, VCS revision and Go version; always 1.",
		ConstLabels: prometheus.Labels{"version": v, "revision": revision, "goversion": runtime.Version()},
	}, func() float64 { return 1 })
}
