package appname

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestDefaultKeepsTheOperatorsName(t *testing.T) {
	t.Setenv("PGAPPNAME", "")
	for _, c := range []struct{ conn, want string }{
		{"postgres://u@localhost/db", "consumer"},
		{"host=localhost dbname=db", "consumer"},
		{"postgres://u@localhost/db?application_name=mine", "mine"},
		{"host=localhost dbname=db application_name=mine", "mine"},
		{"postgres://u@localhost/db?application_name=", ""}, // explicitly unnamed stays unnamed
	} {
		cfg, err := pgxpool.ParseConfig(c.conn)
		if err != nil {
			t.Fatal(err)
		}
		if got := Default(cfg.ConnConfig.RuntimeParams, "consumer"); got != c.want {
			t.Errorf("%s: Default returned %q, want %q", c.conn, got, c.want)
		}
		if got := cfg.ConnConfig.RuntimeParams[Param]; got != c.want {
			t.Errorf("%s: application_name %q, want %q", c.conn, got, c.want)
		}
	}
}

func TestDefaultKeepsPGAPPNAME(t *testing.T) {
	t.Setenv("PGAPPNAME", "from-env")
	cfg, err := pgx.ParseConfig("postgres://u@localhost/db")
	if err != nil {
		t.Fatal(err)
	}
	if got := Default(cfg.RuntimeParams, "consumer-listener"); got != "from-env" {
		t.Errorf("with PGAPPNAME: %q, want from-env", got)
	}
}
