// A fixed pool of worker threads for data-parallel loops. A loop is a count of tasks;
// workers (and the caller) claim tasks with an atomic counter, so uneven tasks (causal
// attention rows, the last panel of a matrix) balance themselves. Workers spin briefly
// between loops before sleeping: a decoder layer issues a loop every few hundred
// microseconds, and waking a sleeping thread costs tens of them.
#include "CKernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define CKPT_MAX_THREADS 256

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int nthreads;                 // workers + the caller
    pthread_t workers[CKPT_MAX_THREADS];
    _Atomic uint64_t generation;  // bumped once per loop
    _Atomic int64_t next_task;
    _Atomic int active;           // workers still inside the current loop
    int64_t ntasks;
    ckpt_task_fn fn;
    void *ctx;
    int quit;
} pool_state;

static pool_state pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .nthreads = 1,
};
static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER;
// Set while a thread runs a task: a loop started from inside a task runs inline instead
// of waiting for a pool that is busy running its caller (which would deadlock).
static _Thread_local int inside_task;
static _Thread_local int current_thread;

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static void drain(int thread) {
    inside_task = 1;
    current_thread = thread;
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&pool.next_task, 1, memory_order_relaxed);
        if (t >= pool.ntasks) break;
        pool.fn(pool.ctx, t, thread);
    }
    inside_task = 0;
}

static void *worker_main(void *arg) {
    const int thread = (int)(intptr_t)arg;
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = atomic_load_explicit(&pool.generation, memory_order_acquire);
        for (int spin = 0; gen == seen && spin < 20000; spin++) {
            cpu_relax();
            gen = atomic_load_explicit(&pool.generation, memory_order_acquire);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool.lock);
            while ((gen = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen && !pool.quit)
                pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        if (pool.quit) return NULL;
        seen = gen;
        drain(thread);
        atomic_fetch_sub_explicit(&pool.active, 1, memory_order_release);
    }
}

static void stop_workers(void) {
    pthread_mutex_lock(&pool.lock);
    pool.quit = 1;
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 1; i < pool.nthreads; i++) pthread_join(pool.workers[i], NULL);
    pool.quit = 0;
    pool.nthreads = 1;
}

int ckpt_pool_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > CKPT_MAX_THREADS) n = CKPT_MAX_THREADS;
    pthread_mutex_lock(&run_lock);
    if (n != pool.nthreads) {
        stop_workers();
        int started = 1;
        for (int i = 1; i < n; i++) {
            if (pthread_create(&pool.workers[i], NULL, worker_main, (void *)(intptr_t)i) != 0) break;
            started++;
        }
        pool.nthreads = started;
    }
    const int got = pool.nthreads;
    pthread_mutex_unlock(&run_lock);
    return got;
}

int ckpt_pool_threads(void) { return pool.nthreads; }

void ckpt_pool_run(int64_t ntasks, ckpt_task_fn fn, void *ctx) {
    if (ntasks <= 0) return;
    if (inside_task) {
        // Nested: run serially on this thread, under this thread's index, so per-thread
        // scratch of the nested loop is this thread's slot and no one else's.
        for (int64_t t = 0; t < ntasks; t++) fn(ctx, t, current_thread);
        return;
    }
    pthread_mutex_lock(&run_lock);
    if (pool.nthreads == 1 || ntasks == 1) {
        inside_task = 1;
        current_thread = 0;
        for (int64_t t = 0; t < ntasks; t++) fn(ctx, t, 0);
        inside_task = 0;
        pthread_mutex_unlock(&run_lock);
        return;
    }
    pool.fn = fn;
    pool.ctx = ctx;
    pool.ntasks = ntasks;
    atomic_store_explicit(&pool.next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&pool.active, pool.nthreads - 1, memory_order_relaxed);
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    drain(0);
    while (atomic_load_explicit(&pool.active, memory_order_acquire) > 0) cpu_relax();
    pthread_mutex_unlock(&run_lock);
}
