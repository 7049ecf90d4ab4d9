package config_test

import (
	"context"
	"fmt"

	"github.com/sethvargo/go-envconfig"

	"github.com/tasker-systems/consumer/config"
)

// Settings come from the environment; LoadFrom takes any lookuper, which makes them testable.
func ExampleLoadFrom() {
	cfg, err := config.LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"DATABASE_URL":                "postgres://consumer@db/app",
		"CONSUMER_MODE":               "polling",
		"CONSUMER_VISIBILITY_TIMEOUT": "45s",
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Mode, cfg.VisibilityTimeout, cfg.Concurrency, cfg.Mode.Listens())

	_, err = config.LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"DATABASE_URL": "postgres://consumer@db/app", "CONSUMER_POLL_INTERVAL": "often",
	}))
	fmt.Println(err)
	// Output:
	// polling 45s 8 false
	// CONSUMER_POLL_INTERVAL: time: invalid duration "often"
}
