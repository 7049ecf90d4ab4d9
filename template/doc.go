// Package template parses and validates workflow templates: the YAML files
// that describe a DAG of steps for one namespace/name/version (see
// docs/templates.md).
//
// The package is pure Go and knows nothing about the database or PGMQ, so
// templates can be checked offline (in tests, in CI, by `consumer` at start-up)
// before anything is registered.
//
// # Loading
//
// [Parse] decodes one document, applies defaults and runs [Template.Validate].
// [LoadFile] and [LoadDir] wrap it for files on disk; LoadDir reads every
// *.yaml and *.yml file in a directory in file-name order and reports every
// bad file at once (joined with [errors.Join]) instead of stopping at the
// first, because an operator fixing a template directory wants the full list.
//
// Unknown YAML fields are rejected so that a typo such as `retyr:` fails loudly
// instead of silently falling back to the defaults.
//
// # One document
//
// A template has one written shape: the YAML file, the JSON document the
// registry stores ([Template.MarshalJSON], [ParseJSON]) and the input of the
// fingerprint are the same document, the JSON one with every default spelled
// out. ParseJSON and Parse apply the same defaults and the same validation.
//
// # Defaults
//
// A step without a retry block, or with a partial one, gets
// [RetryableDefault], [MaxAttemptsDefault], [BackoffBaseDefault] and
// [BackoffMaxDefault] ([RetryDefault] returns them as a policy):
//
//	retryable: true, max_attempts: 3, backoff_base: 1s, backoff_max: 5m
//
// and a template without identity_strategy gets [IdentityStrategyDefault]
// (strict). Namespaces follow the wire contract's rule,
// [messages.ValidateNamespace].
//
// # Validation
//
// Validation collects every problem rather than the first. Each message names
// the source file and, where relevant, the step, for example:
//
//	testdata/bad.yaml: step "join": unknown dependency "lefty"
//	testdata/cycle.yaml: step "a": cycle: a -> b -> c -> a
//
// # Graph helpers
//
// [Template.Roots], [Template.Children] and [Template.TopologicalOrder] answer
// the questions the orchestrator asks when it creates a task and when a step
// finishes. They scan the step list; templates are small, and keeping no
// derived index means a Template stays a plain value that is safe to copy and
// to share between goroutines as long as nobody mutates it.
//
// # Identity
//
// [Template.Key] names a template (namespace/name@version) and
// [Template.Fingerprint] hashes its canonical document, so a registry can tell
// "the same template again" (harmless on every restart) from "a different
// template under an existing version" (a mistake to refuse).
//
// Like every package but worker, messages, pgmq and tasker, it is the consumer's implementation,
// not supported API: other programs should not import it, and its exported names may change in
// any release (docs/architecture.md lists the public edge).
package template
