package main

// The api's database, only when FETCHML_DATABASE_ADDR is set (unset: no database, as before). The api applies
// the embedded migrations (migrations/NNNN_name.sql, NNNN = the schema version it brings the database to) up
// to FETCHML_SCHEMA_TARGET, in the background, so /health answers at once; while the database does not
// answer it tries again every second. The worker never touches the database.
//
// Two APIs start side by side in a blue/green deploy, so the migrations run under a session-level
// pg_advisory_lock on one connection: the second waits, then finds them recorded. Each migration runs in its
// own transaction together with its schema_migrations row (applied_by = FETCHML_VERSION). Nothing above the
// target is ever applied and nothing is ever reverted: an image started on a newer schema leaves it as it is.
// If the live schema is above FETCHML_SCHEMA_MAX (an operator forced the move) the api still runs, logs a
// warning and says "schema_compatible": false in /health.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the pg_advisory_lock key every FetchML API agrees on ("fml_sch").
const migrationLock int64 = 0x666d6c5f736368

const createMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL
)`

type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the embedded migrations in version order; a malformed or repeated name is an error.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	seen := map[int]string{}
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration %s: want a name like 0001_what.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v == 0 || seen[v] != "" {
			return nil, fmt.Errorf("migration %s: version %d is 0 or already taken by %s", e.Name(), v, seen[v])
		}
		seen[v] = e.Name()
		body, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{v, e.Name(), string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

type database struct {
	db         *sql.DB
	addr       string
	version    string // FETCHML_VERSION, recorded as applied_by
	target     int    // FETCHML_SCHEMA_TARGET
	max        int    // FETCHML_SCHEMA_MAX; -1 when not set
	migrations []migration

	mu           sync.Mutex
	schema       int  // the live schema as last read (0 before any read)
	incompatible bool // schema > max, warned about once per change
}

// newDatabase configures the api's database from the environment; nil when FETCHML_DATABASE_ADDR is unset.
// Errors name the variable or the file, never the password.
func newDatabase(version string) (*database, error) {
	addr := strings.TrimSpace(os.Getenv("FETCHML_DATABASE_ADDR"))
	if addr == "" {
		return nil, nil
	}
	path := os.Getenv("FETCHML_DATABASE_PASSWORD_FILE")
	if path == "" {
		return nil, errors.New("FETCHML_DATABASE_ADDR is set but FETCHML_DATABASE_PASSWORD_FILE is not")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the database password (FETCHML_DATABASE_PASSWORD_FILE): %v", err)
	}
	password := strings.TrimRight(strings.SplitN(string(raw), "\n", 2)[0], "\r")
	if password == "" {
		return nil, fmt.Errorf("FETCHML_DATABASE_PASSWORD_FILE=%s: the first line is empty", path)
	}
	target, err := schemaEnv("FETCHML_SCHEMA_TARGET", 0)
	if err != nil {
		return nil, err
	}
	schemaMax, err := schemaEnv("FETCHML_SCHEMA_MAX", -1)
	if err != nil {
		return nil, err
	}
	migrations, err := loadMigrations()
	if err != nil {
		return nil, err
	}
	if n := len(migrations); n == 0 || migrations[n-1].version < target {
		return nil, fmt.Errorf("FETCHML_SCHEMA_TARGET=%d, but this binary's migrations end at %d", target, highest(migrations))
	}
	dsn := url.URL{
		Scheme: "postgres", User: url.UserPassword("postgres", password), Host: addr, Path: "/fetchml",
		RawQuery: url.Values{
			"sslmode": {"disable"}, "connect_timeout": {"2"}, "application_name": {"fetchml-api " + version},
		}.Encode(),
	}
	db, err := sql.Open("postgres", dsn.String())
	if err != nil {
		return nil, fmt.Errorf("database %s: %v", addr, err)
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	return &database{db: db, addr: addr, version: version, target: target, max: schemaMax, migrations: migrations}, nil
}

func highest(ms []migration) int {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

func schemaEnv(key string, fallback int) (int, error) {
	raw := strings.TrimSpace(os.Getenv(key))
	if raw == "" {
		return fallback, nil
	}
	v, err := strconv.Atoi(raw)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s: expected a schema version (an integer >= 0), saw %q", key, raw)
	}
	return v, nil
}

// migrateLoop applies the migrations, trying again every second until it succeeds or ctx ends.
func (d *database) migrateLoop(ctx context.Context) {
	last := ""
	for {
		err := d.migrate(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		if msg := err.Error(); msg != last { // once per distinct error, not once a second
			log.Printf("fetchml-api: migrations not applied yet: %v (trying again every second)", err)
			last = msg
		}
		sleep(ctx, time.Second)
	}
}

func (d *database) migrate(ctx context.Context) (err error) {
	conn, err := d.db.Conn(ctx) // the advisory lock belongs to a session: one connection throughout
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err = conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, uerr := conn.ExecContext(uctx, "SELECT pg_advisory_unlock($1)", migrationLock); uerr != nil {
			// Not released: close this connection rather than return it to the pool still holding the lock.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if _, err = conn.ExecContext(ctx, createMigrations); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return err
	}
	live := 0
	for rows.Next() {
		var v int
		if err = rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[v] = true
		live = max(live, v)
	}
	if err = rows.Close(); err != nil {
		return err
	}
	done := 0
	for _, m := range d.migrations {
		if m.version > d.target {
			break // never beyond the target
		}
		if applied[m.version] {
			continue
		}
		if err = d.apply(ctx, conn, m); err != nil {
			return err
		}
		log.Printf("fetchml-api: applied migration %s (schema %d)", m.name, m.version)
		live, done = max(live, m.version), done+1
	}
	switch {
	case done > 0:
		log.Printf("fetchml-api: database schema is now %d (target %d, %d migration(s) applied)", live, d.target, done)
	case live > d.target:
		log.Printf("fetchml-api: database schema is %d, above this image's target %d: nothing applied, nothing reverted", live, d.target)
	default:
		log.Printf("fetchml-api: database schema is %d (target %d): nothing to apply", live, d.target)
	}
	d.note(live)
	return nil
}

// apply runs one migration and records it, in one transaction.
func (d *database) apply(ctx context.Context, conn *sql.Conn, m migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if _, err = tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	if _, err = tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_by) VALUES ($1, $2)", m.version, d.version); err != nil {
		return fmt.Errorf("recording migration %s: %w", m.name, err)
	}
	return tx.Commit()
}

// note records the live schema and warns, once per change, when it is above what this image runs on.
func (d *database) note(live int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.schema = live
	bad := d.max >= 0 && live > d.max
	if bad && !d.incompatible {
		log.Printf("fetchml-api: WARNING: the live database schema is %d, above the highest this image runs on "+
			"(FETCHML_SCHEMA_MAX=%d); running anyway (an operator forced it)", live, d.max)
	}
	d.incompatible = bad
}

// report adds the database's part of /health to body: "database" ok|unreachable, "schema" (the live
// max(version), 0 before any migration; the last value read while unreachable), "schema_max", and
// "schema_compatible": false when the live schema is above FETCHML_SCHEMA_MAX.
func (d *database) report(ctx context.Context, body map[string]any) {
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	var live int
	err := d.db.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&live)
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "42P01" { // undefined_table: nothing migrated yet
		err, live = nil, 0
	}
	body["database"] = "ok"
	if err != nil {
		body["database"] = "unreachable"
	} else {
		d.note(live)
	}
	d.mu.Lock()
	body["schema"], body["schema_max"] = d.schema, d.max
	incompatible := d.incompatible
	d.mu.Unlock()
	if d.max < 0 {
		delete(body, "schema_max")
	}
	if incompatible {
		body["schema_compatible"] = false
	}
}
