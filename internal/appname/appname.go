package appname

// Param is the run-time parameter that names a connection.
const Param = "application_name"

// ListenerSuffix is appended to a pool's name to name its LISTEN connection.
const ListenerSuffix = "-listener"

// Default sets application_name in params (a pgx config's RuntimeParams) to name unless the
// connection string or PGAPPNAME already set it, and returns the name in effect.
func Default(params map[string]string, name string) string {
	if set, ok := params[Param]; ok {
		return set
	}
	params[Param] = name
	return name
}
