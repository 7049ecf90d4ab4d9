package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-systems/consumer/commands"
	"github.com/tasker-systems/consumer/internal/depth"
)

const namespace = "consumer"

// latencyBuckets span 100µs to ~30s: the notify-to-handler target is milliseconds, handler
// times reach into seconds.
func latencyBuckets() []float64 { return prometheus.ExponentialBuckets(0.0001, 2.5, 15) }

// Observer records the actor's per-message measurements; it implements actor.Observer.
type Observer struct {
	messages      *prometheus.CounterVec
	handler       *prometheus.HistogramVec
	notifyLatency *prometheus.HistogramVec
	batchSize     *prometheus.HistogramVec
	batchDuration *prometheus.HistogramVec
	batchAborted  *prometheus.CounterVec
}

// NewObserver creates the actor's metrics and registers them with reg.
func NewObserver(reg prometheus.Registerer) *Observer {
	o := &Observer{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "messages_processed_total",
			Help: "Orchestration messages by queue and outcome (processed, skipped, dead_lettered, not_found, failed).",
		}, []string{"queue", "outcome"}),
		handler: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "handler_duration_seconds", Help: "Time spent in the task, step or finalization handler.",
			Buckets: latencyBuckets(),
		}, []string{"queue"}),
		notifyLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "notify_to_handler_seconds",
			Help:    "From the notification (or poll) that announced a message to the end of its handling.",
			Buckets: latencyBuckets(),
		}, []string{"queue"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "batch_size", Help: "Messages per handler transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}, []string{"queue"}),
		batchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "batch_duration_seconds", Help: "Duration of a handler transaction, claim to commit.",
			Buckets: latencyBuckets(),
		}, []string{"queue"}),
		batchAborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "batch_aborted_total", Help: "Handler transactions that did not commit.",
		}, []string{"queue"}),
	}
	reg.MustRegister(o.messages, o.handler, o.notifyLatency, o.batchSize, o.batchDuration, o.batchAborted)
	return o
}

// MessageDone implements actor.Observer.
func (o *Observer) MessageDone(queue string, outcome commands.Outcome, handlerTime, sinceReceived time.Duration) {
	o.messages.WithLabelValues(queue, outcome.String()).Inc()
	if outcome == commands.OutcomeNotFound {
		return
	}
	o.handler.WithLabelValues(queue).Observe(handlerTime.Seconds())
	o.notifyLatency.WithLabelValues(queue).Observe(sinceReceived.Seconds())
}

// BatchDone implements actor.Observer.
func (o *Observer) BatchDone(queue string, size int, took time.Duration, committed bool) {
	o.batchSize.WithLabelValues(queue).Observe(float64(size))
	o.batchDuration.WithLabelValues(queue).Observe(took.Seconds())
	if !committed {
		o.batchAborted.WithLabelValues(queue).Inc()
	}
}

// ChannelStatser is a pipeline channel (commands.Channel of any type).
type ChannelStatser interface{ Stats() commands.ChannelStats }

// RegisterChannels exposes saturation, length and blocked sends of the pipeline channels.
func RegisterChannels(reg prometheus.Registerer, channels ...ChannelStatser) {
	for _, ch := range channels {
		name := ch.Stats().Name
		labels := prometheus.Labels{"channel": name}
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "channel_saturation",
				Help: "Fill ratio (0-1) of a pipeline channel.", ConstLabels: labels},
				func() float64 { return ch.Stats().Saturation }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "channel_blocked_sends_total",
				Help: "Sends that waited because the channel was full (backpressure).", ConstLabels: labels},
				func() float64 { return float64(ch.Stats().BlockedSends) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "channel_blocked_seconds_total",
				Help: "Time senders spent waiting on a full channel.", ConstLabels: labels},
				func() float64 { return ch.Stats().BlockedTime.Seconds() }),
		)
	}
}

// Counter is a monotonically increasing count owned by another package.
type Counter func() uint64

// RegisterCounter exposes a counter owned elsewhere (listener reconnects, poller cycles...).
func RegisterCounter(reg prometheus.Registerer, name, help string, c Counter) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
		func() float64 { return float64(c()) }))
}

// RegisterGauge exposes a gauge owned elsewhere.
func RegisterGauge(reg prometheus.Registerer, name, help string, g func() float64) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, g))
}

// QueueCollector reports the depths of the consumer's own queues at scrape time, from a
// bounded and cached reading (internal/depth), so scrapes never load the database.
type QueueCollector struct {
	depths   Depths
	dlq      string
	depth    *prometheus.Desc
	visible  *prometheus.Desc
	oldest   *prometheus.Desc
	dlqDepth *prometheus.Desc
	up       *prometheus.Desc
}

// Depths reads queue depths.
type Depths interface {
	Read(ctx context.Context) (depth.Reading, error)
}

// NewQueueCollector returns a collector of what depths reads; dlqQueue is reported again as
// consumer_dlq_depth. Counts stop at the reader's cap.
func NewQueueCollector(depths Depths, dlqQueue string) *QueueCollector {
	return &QueueCollector{
		depths: depths, dlq: dlqQueue,
		depth:    prometheus.NewDesc(namespace+"_queue_depth", "Messages in a consumer queue (counts stop at a cap).", []string{"queue"}, nil),
		visible:  prometheus.NewDesc(namespace+"_queue_visible_depth", "Messages in a consumer queue that are visible now (counts stop at a cap).", []string{"queue"}, nil),
		oldest:   prometheus.NewDesc(namespace+"_queue_oldest_message_age_seconds", "Age of the oldest message in a consumer queue.", []string{"queue"}, nil),
		dlqDepth: prometheus.NewDesc(namespace+"_dlq_depth", "Messages in the dead-letter queue (counts stop at a cap).", nil, nil),
		up:       prometheus.NewDesc(namespace+"_queue_metrics_up", "1 when the queue depths could be read at this scrape.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.visible
	ch <- c.oldest
	ch <- c.dlqDepth
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	reading, err := c.depths.Read(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, q := range reading.Queues {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(q.Length), q.Name)
		ch <- prometheus.MustNewConstMetric(c.visible, prometheus.GaugeValue, float64(q.Visible), q.Name)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, q.OldestAge.Seconds(), q.Name)
		if q.Name == c.dlq {
			ch <- prometheus.MustNewConstMetric(c.dlqDepth, prometheus.GaugeValue, float64(q.Length))
		}
	}
}
