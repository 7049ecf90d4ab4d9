package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/tasker-systems/consumer/messages"
	"github.com/tasker-systems/consumer/template"
)

// registerLock is the transaction-level advisory lock key that serializes Register across
// processes: pgmq.create and CREATE TRIGGER are not safe to run concurrently for one queue.
const registerLock int64 = 0x7461736b65720010

// Register stores templates in the registry table and creates the worker queue of each of
// their namespaces (worker_<ns>_queue) with its notify trigger (see docs/protocol.md).
//
// Registering a template again with the same fingerprint does nothing. A template whose
// fingerprint differs from the one registered under the same namespace/name/version is
// rejected: the error names the template key, the file it was loaded from and the file the
// registered version came from. Every template is checked and all conflicts are reported
// together; on any error nothing is registered.
//
// Register runs in one transaction under an advisory lock, so several processes may run it at
// once. A nil log discards log output.
func Register(ctx context.Context, db *pgxpool.Pool, templates []*template.Template, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("register templates: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", registerLock); err != nil {
		return fmt.Errorf("register templates: lock: %w", err)
	}

	var (
		errs       []error
		namespaces = map[string]bool{}
		added      []string
	)
	for _, t := range templates {
		if t == nil {
			continue
		}
		created, err := registerOne(ctx, tx, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		namespaces[t.Namespace] = true
		if created {
			added = append(added, t.Key())
			log.Info("template registered", zap.String("template", t.Key()),
				zap.String("source", t.Source), zap.String("fingerprint", t.Fingerprint()))
		} else {
			log.Debug("template already registered", zap.String("template", t.Key()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	nsList := make([]string, 0, len(namespaces))
	for ns := range namespaces {
		nsList = append(nsList, ns)
	}
	sort.Strings(nsList)
	for _, ns := range nsList {
		q := messages.WorkerQueue(ns)
		// ensure_queue reads the catalogs first: a queue that is set up already is not locked.
		if _, err := tx.Exec(ctx, "SELECT tasker.ensure_queue($1::text)", q); err != nil {
			return fmt.Errorf("register templates: set up worker queue %s: %w", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("register templates: commit: %w", err)
	}
	log.Info("templates ready", zap.Int("templates", len(templates)), zap.Int("new", len(added)),
		zap.Strings("worker_queues", queueNames(nsList)))
	return nil
}

func queueNames(namespaces []string) []string {
	out := make([]string, len(namespaces))
	for i, ns := range namespaces {
		out[i] = messages.WorkerQueue(ns)
	}
	return out
}

// registerOne upserts one template; created is false when it was registered already.
func registerOne(ctx context.Context, tx pgx.Tx, t *template.Template) (created bool, err error) {
	if err := t.Validate(); err != nil {
		return false, fmt.Errorf("register template %s: %w", t.Key(), err)
	}
	def, err := encodeDefinition(t)
	if err != nil {
		return false, fmt.Errorf("register template %s (%s): %w", t.Key(), sourceOf(t), err)
	}
	fp := t.Fingerprint()
	var id int64
	err = tx.QueryRow(ctx, `
		INSERT INTO tasker.workflow_templates (namespace, name, version, fingerprint, identity_strategy, definition, source)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (namespace, name, version) DO NOTHING
		RETURNING template_id`,
		t.Namespace, t.Name, t.Version, fp, string(strategyOf(t)), def, t.Source).Scan(&id)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("register template %s: %w", t.Key(), err)
	}
	var existingFP, existingSource string
	err = tx.QueryRow(ctx, `
		SELECT fingerprint, source FROM tasker.workflow_templates
		WHERE namespace = $1 AND name = $2 AND version = $3`,
		t.Namespace, t.Name, t.Version).Scan(&existingFP, &existingSource)
	if err != nil {
		return false, fmt.Errorf("register template %s: read registered version: %w", t.Key(), err)
	}
	if existingFP != fp {
		if existingSource == "" {
			existingSource = "unknown source"
		}
		return false, fmt.Errorf("register template %s (%s): a different template is already registered under this version (from %s): publish the change under a new version",
			t.Key(), sourceOf(t), existingSource)
	}
	return false, nil
}

func sourceOf(t *template.Template) string {
	if t.Source == "" {
		return "no source file"
	}
	return t.Source
}

func strategyOf(t *template.Template) template.IdentityStrategy {
	if t.IdentityStrategy == "" {
		return template.IdentityStrict
	}
	return t.IdentityStrategy
}

// definition is how a template is stored in workflow_templates.definition: the parsed form
// with defaults applied and durations in Go syntax.
type definition struct {
	Namespace        string           `json:"namespace"`
	Name             string           `json:"name"`
	Version          string           `json:"version"`
	IdentityStrategy string           `json:"identity_strategy"`
	Steps            []definitionStep `json:"steps"`
}

type definitionStep struct {
	Name         string            `json:"name"`
	Handler      definitionHandler `json:"handler"`
	Dependencies []string          `json:"dependencies"`
	Retry        definitionRetry   `json:"retry"`
}

type definitionHandler struct {
	Callable       string         `json:"callable"`
	Initialization map[string]any `json:"initialization"`
}

type definitionRetry struct {
	Retryable   bool   `json:"retryable"`
	MaxAttempts int    `json:"max_attempts"`
	BackoffBase string `json:"backoff_base"`
	BackoffMax  string `json:"backoff_max"`
}

func encodeDefinition(t *template.Template) (json.RawMessage, error) {
	d := definition{
		Namespace:        t.Namespace,
		Name:             t.Name,
		Version:          t.Version,
		IdentityStrategy: string(strategyOf(t)),
		Steps:            make([]definitionStep, len(t.Steps)),
	}
	for i, s := range t.Steps {
		deps := s.Dependencies
		if deps == nil {
			deps = []string{}
		}
		init := s.Handler.Initialization
		if init == nil {
			init = map[string]any{}
		}
		d.Steps[i] = definitionStep{
			Name:         s.Name,
			Handler:      definitionHandler{Callable: s.Handler.Callable, Initialization: init},
			Dependencies: deps,
			Retry: definitionRetry{
				Retryable:   s.Retry.Retryable,
				MaxAttempts: s.Retry.MaxAttempts,
				BackoffBase: s.Retry.BackoffBase.String(),
				BackoffMax:  s.Retry.BackoffMax.String(),
			},
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode definition: %w", err)
	}
	return b, nil
}

// decodeDefinition rebuilds a template from its stored definition and checks it against the
// stored fingerprint, so a hand-edited registry row cannot silently change a template.
func decodeDefinition(raw []byte, fingerprint, source string) (*template.Template, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep numbers in initialization exactly as registered
	var d definition
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decode definition: %w", err)
	}
	t := &template.Template{
		Namespace:        d.Namespace,
		Name:             d.Name,
		Version:          d.Version,
		IdentityStrategy: template.IdentityStrategy(d.IdentityStrategy),
		Steps:            make([]template.Step, len(d.Steps)),
		Source:           source,
	}
	for i, s := range d.Steps {
		base, err := time.ParseDuration(s.Retry.BackoffBase)
		if err != nil {
			return nil, fmt.Errorf("decode definition: step %q: backoff_base: %w", s.Name, err)
		}
		maxDelay, err := time.ParseDuration(s.Retry.BackoffMax)
		if err != nil {
			return nil, fmt.Errorf("decode definition: step %q: backoff_max: %w", s.Name, err)
		}
		t.Steps[i] = template.Step{
			Name:         s.Name,
			Handler:      template.Handler{Callable: s.Handler.Callable, Initialization: s.Handler.Initialization},
			Dependencies: s.Dependencies,
			Retry: template.Retry{
				Retryable:   s.Retry.Retryable,
				MaxAttempts: s.Retry.MaxAttempts,
				BackoffBase: base,
				BackoffMax:  maxDelay,
			},
		}
	}
	if got := t.Fingerprint(); got != fingerprint {
		return nil, fmt.Errorf("stored definition does not match its fingerprint (%s, want %s)", got, fingerprint)
	}
	return t, nil
}

// cacheKey identifies one registered template definition.
type cacheKey struct {
	id          int64
	fingerprint string
}

// templateCache holds parsed definitions. Entries are never removed: a registered
// (id, fingerprint) pair always means the same template, and there are few of them.
type templateCache struct {
	mu     sync.RWMutex
	byKey  map[cacheKey]*template.Template
	latest map[string]cacheKey // namespace/name@version -> the key last loaded for it
}

func newTemplateCache() *templateCache {
	return &templateCache{byKey: map[cacheKey]*template.Template{}, latest: map[string]cacheKey{}}
}

func (c *templateCache) hint(key string) cacheKey {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.latest[key]
}

func (c *templateCache) get(k cacheKey) *template.Template {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byKey[k]
}

func (c *templateCache) put(key string, k cacheKey, t *template.Template) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byKey[k] = t
	c.latest[key] = k
}

// registeredTemplate is a template as found in the registry.
type registeredTemplate struct {
	id int64
	t  *template.Template
}

// templateKey names a template: namespace/name@version.
type templateKey struct{ namespace, name, version string }

func (k templateKey) String() string { return k.namespace + "/" + k.name + "@" + k.version }

// lookupTemplatesSQL finds templates by exact key; a definition is only transferred when the
// cache does not hold the registered fingerprint (hint_id, hint_fp).
const lookupTemplatesSQL = `
	SELECT k.ord, t.template_id, t.fingerprint, t.source,
	       CASE WHEN t.template_id = k.hint_id AND t.fingerprint = k.hint_fp THEN NULL ELSE t.definition END
	FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[])
	       WITH ORDINALITY AS k(namespace, name, version, hint_id, hint_fp, ord)
	JOIN tasker.workflow_templates t ON t.namespace = k.namespace AND t.name = k.name AND t.version = k.version`

// lookupTemplates finds the registered templates of keys in one statement; a key that is not
// registered is missing from the map.
func (e *Engine) lookupTemplates(ctx context.Context, tx pgx.Tx, keys []templateKey) (map[templateKey]registeredTemplate, error) {
	var uniq []templateKey
	seen := map[templateKey]bool{}
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	n := len(uniq)
	namespaces, names, versions, fps := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	ids := make([]int64, n)
	for i, k := range uniq {
		hint := e.templates.hint(k.String())
		namespaces[i], names[i], versions[i], ids[i], fps[i] = k.namespace, k.name, k.version, hint.id, hint.fingerprint
	}
	type found struct {
		ord    int64
		id     int64
		fp     string
		source string
		def    []byte
	}
	var rs []found
	b := newBatch()
	b.Queue(lookupTemplatesSQL, namespaces, names, versions, ids, fps).Query(func(rows pgx.Rows) error {
		var err error
		rs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (found, error) {
			var f found
			err := row.Scan(&f.ord, &f.id, &f.fp, &f.source, &f.def)
			return f, err
		})
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("look up %d template(s): %w", n, err)
	}
	out := make(map[templateKey]registeredTemplate, len(rs))
	for _, f := range rs {
		k := uniq[f.ord-1]
		ck := cacheKey{id: f.id, fingerprint: f.fp}
		def := f.def
		if def == nil {
			if t := e.templates.get(ck); t != nil {
				out[k] = registeredTemplate{id: f.id, t: t}
				continue
			}
			// Cannot happen (entries are never removed), but read the definition rather than fail.
			if err := tx.QueryRow(ctx, "SELECT definition FROM tasker.workflow_templates WHERE template_id = $1", f.id).Scan(&def); err != nil {
				return nil, fmt.Errorf("look up template %s: %w", k, err)
			}
		}
		t, err := decodeDefinition(def, f.fp, f.source)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", k, err)
		}
		e.templates.put(k.String(), ck, t)
		out[k] = registeredTemplate{id: f.id, t: t}
	}
	return out, nil
}
