package main

// The worker's side of the queue. A job is taken atomically from the pending list onto the running list
// (BLMOVE), keeps a heartbeat key alive while it runs, gets its artifact written, and is recorded done.
// On SIGTERM the worker takes no new job; the current one finishes if it can within the stop grace period
// (FETCHML_STOP_GRACE_SECONDS, less a second for the bookkeeping), and is otherwise put back at the taking
// end of the pending list, so the next worker takes it first. A worker that dies (SIGKILL) leaves its job on
// the running list with a heartbeat that expires: `fetchml-infra queue requeue-stuck` finds and requeues it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/redis/go-redis/v9"
)

const (
	heartbeatPrefix = "fetchml:heartbeat:"    // + job id: alive while a worker runs the job
	jobsFinished    = "fetchml:jobs:finished" // hash job id -> times finished (a job run twice shows 2)
	heartbeatEvery  = time.Second
	heartbeatTTL    = 5 * time.Second
)

type worker struct {
	rdb     *redis.Client
	store   *artifactStore // nil: no artifacts
	jobTime time.Duration  // FETCHML_JOB_SECONDS: how long a stand-in job takes
	grace   time.Duration  // FETCHML_STOP_GRACE_SECONDS: the container's stop grace period
	name    string
}

func newWorker(rdb *redis.Client, store *artifactStore) (*worker, error) {
	jobTime, err := seconds("FETCHML_JOB_SECONDS", 0)
	if err != nil {
		return nil, err
	}
	grace, err := seconds("FETCHML_STOP_GRACE_SECONDS", 10)
	if err != nil {
		return nil, err
	}
	name, _ := os.Hostname()
	return &worker{rdb: rdb, store: store, jobTime: jobTime, grace: grace, name: name}, nil
}

func seconds(key string, fallback float64) (time.Duration, error) {
	raw := strings.TrimSpace(os.Getenv(key))
	if raw == "" {
		return time.Duration(fallback * float64(time.Second)), nil
	}
	v, err := strconv.ParseFloat(raw, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s: expected a number of seconds >= 0, saw %q", key, raw)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// run takes jobs until stop is done, and returns once the current job is finished or put back.
func (w *worker) run(stop context.Context) {
	useBLMove := true
	for stop.Err() == nil {
		var id string
		var err error
		if useBLMove {
			id, err = w.rdb.BLMove(stop, queuePending, queueRunning, "RIGHT", "LEFT", 2*time.Second).Result()
			if err != nil && strings.Contains(strings.ToLower(err.Error()), "unknown command") {
				useBLMove = false // Redis < 6.2
				continue
			}
		} else {
			id, err = w.rdb.BRPopLPush(stop, queuePending, queueRunning, 2*time.Second).Result()
		}
		if errors.Is(err, redis.Nil) {
			continue // timed out with nothing queued
		}
		if err != nil {
			if stop.Err() == nil {
				log.Printf("worker: queue: %v", err)
				sleep(stop, time.Second)
			}
			continue
		}
		job, cancel := afterStop(stop, w.grace-time.Second)
		w.handle(job, id)
		cancel()
	}
}

// afterStop is a context that ends d after stop ends: the time a job in flight still has.
func afterStop(stop context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-stop.Done():
			select {
			case <-time.After(d):
				cancel()
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (w *worker) handle(ctx context.Context, id string) {
	log.Printf("worker: took job %s", id)
	beating := w.heartbeat(id)
	if !sleepFull(ctx, w.jobTime) {
		beating()
		w.putBack(id, "stopping before it finished")
		return
	}
	if w.store != nil {
		if err := w.store.put(ctx, id); err != nil {
			beating()
			log.Printf("worker: artifact for job %s: %v", id, err)
			if ctx.Err() != nil {
				w.putBack(id, "stopping before its artifact was written")
				return
			}
			sleep(context.Background(), time.Second)
			return // left on the running list: its heartbeat expires, and requeue-stuck sees it
		}
	}
	beating()
	bg := context.Background()
	_, err := w.rdb.TxPipelined(bg, func(p redis.Pipeliner) error {
		p.SAdd(bg, jobsDone, id)
		p.HIncrBy(bg, jobsFinished, id, 1)
		p.LRem(bg, queueRunning, 1, id)
		p.Del(bg, heartbeatPrefix+id)
		return nil
	})
	if err != nil {
		log.Printf("worker: recording job %s done: %v (left on %s)", id, err, queueRunning)
		return
	}
	log.Printf("worker: job %s done", id)
}

// heartbeat keeps heartbeatPrefix+id alive until the returned function is called (which waits for it).
func (w *worker) heartbeat(id string) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			w.rdb.Set(ctx, heartbeatPrefix+id, w.name, heartbeatTTL)
			select {
			case <-ctx.Done():
				return
			case <-time.After(heartbeatEvery):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// putBack moves the job off the running list and onto the taking end of the pending list, in one
// transaction, so that no other worker can see it in neither list or in both.
func (w *worker) putBack(id, why string) {
	bg := context.Background()
	_, err := w.rdb.TxPipelined(bg, func(p redis.Pipeliner) error {
		p.LRem(bg, queueRunning, 1, id)
		p.RPush(bg, queuePending, id)
		p.Del(bg, heartbeatPrefix+id)
		return nil
	})
	if err != nil {
		log.Printf("worker: putting job %s back: %v (left on %s)", id, err, queueRunning)
		return
	}
	log.Printf("worker: put job %s back on %s (%s)", id, queuePending, why)
}

// sleepFull waits d, or until ctx ends; whether it waited the whole time.
func sleepFull(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// artifactStore writes one result object per job to a MinIO bucket.
type artifactStore struct {
	client  *minio.Client
	bucket  string
	version string
}

// newArtifactStore reads the credentials file named by FETCHML_MINIO_CREDENTIALS. Its errors name the
// path, never the file's contents.
func newArtifactStore() (*artifactStore, error) {
	path := os.Getenv("FETCHML_MINIO_CREDENTIALS")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("MinIO credentials: %v", err) // "open PATH: no such file or directory" and the like
	}
	lines := append(strings.SplitN(string(data), "\n", 3), "", "")
	access, secret := strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
	if access == "" || secret == "" {
		return nil, fmt.Errorf("MinIO credentials: %s must hold the access key on line 1 and the secret key on line 2", path)
	}
	bucket := os.Getenv("FETCHML_ARTIFACTS_BUCKET")
	if bucket == "" {
		bucket = "artifacts"
	}
	client, err := minio.New(os.Getenv("FETCHML_MINIO_ENDPOINT"), &minio.Options{
		Creds:  credentials.NewStaticV4(access, secret, ""),
		Secure: false, // plain HTTP inside the stack's network
	})
	if err != nil {
		return nil, fmt.Errorf("FETCHML_MINIO_ENDPOINT %q: %v", os.Getenv("FETCHML_MINIO_ENDPOINT"), err)
	}
	return &artifactStore{client: client, bucket: bucket, version: os.Getenv("FETCHML_VERSION")}, nil
}

// put writes jobs/<id>/result.json.
func (s *artifactStore) put(ctx context.Context, id string) error {
	body, err := json.Marshal(struct {
		Job      string `json:"job"`
		Version  string `json:"version"`
		Finished string `json:"finished"`
	}{id, s.version, time.Now().UTC().Format(time.RFC3339)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = s.client.PutObject(ctx, s.bucket, "jobs/"+id+"/result.json", bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "application/json"})
	return err
}
