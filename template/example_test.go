package template_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/tasker-systems/consumer/template"
)

func ExampleParse() {
	src := `
namespace: demo
name: diamond
version: 1.0.0
steps:
  - name: start
    handler: {callable: demo.square}
  - name: left
    handler: {callable: demo.square}
    dependencies: [start]
  - name: right
    handler: {callable: demo.square}
    dependencies: [start]
  - name: join
    handler: {callable: demo.sum}
    dependencies: [left, right]
    retry: {retryable: false, max_attempts: 1}
`
	t, err := template.Parse("diamond.yaml", []byte(src))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(t.Key(), "->", t.WorkerQueue())

	var order []string
	for _, s := range t.TopologicalOrder() {
		order = append(order, s.Name)
	}
	fmt.Println("order:", strings.Join(order, ", "))

	start, _ := t.Step("start")
	fmt.Printf("start: retryable=%v max_attempts=%d backoff=%s..%s\n",
		start.Retry.Retryable, start.Retry.MaxAttempts, start.Retry.BackoffBase, start.Retry.BackoffMax)
	join, _ := t.Step("join")
	fmt.Printf("join: retryable=%v max_attempts=%d\n", join.Retry.Retryable, join.Retry.MaxAttempts)

	// Delay before the third attempt of start, without jitter (nil rnd).
	fmt.Println("backoff after attempt 2:", start.Retry.Backoff(2, nil, nil))
	// A worker's backoff hint wins, capped at backoff_max.
	hint := time.Hour
	fmt.Println("backoff with a 1h hint:", start.Retry.Backoff(2, &hint, nil))

	// Output:
	// demo/diamond@1.0.0 -> worker_demo_queue
	// order: start, left, right, join
	// start: retryable=true max_attempts=3 backoff=1s..5m0s
	// join: retryable=false max_attempts=1
	// backoff after attempt 2: 2s
	// backoff with a 1h hint: 5m0s
}

func ExampleParse_invalid() {
	src := `
namespace: demo
name: broken
version: 1.0.0
steps:
  - name: a
    handler: {callable: demo.square}
    dependencies: [c]
  - name: b
    handler: {callable: demo.square}
    dependencies: [a]
  - name: c
    handler: {callable: demo.square}
    dependencies: [b]
  - name: join
    handler: {callable: demo.sum}
    dependencies: [lefty]
`
	_, err := template.Parse("broken.yaml", []byte(src))
	fmt.Println(err)
	// Output:
	// broken.yaml: step "join": unknown dependency "lefty"
	// broken.yaml: step "a": cycle: a -> b -> c -> a
}
