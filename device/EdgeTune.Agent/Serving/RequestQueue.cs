namespace EdgeTune.Agent.Serving;

/// <summary>
/// Back-pressure in front of the runtime: up to <see cref="Parallel"/> requests generate at once (the model decodes
/// them together) and at most <c>capacity</c> wait, first come first served. A request that finds no free slot and
/// the waiting room full is refused at once (the API answers 429 with Retry-After). An exclusive lease (an adapter
/// switch) waits in the same line until nothing generates, and holds every slot: requests admitted before it are
/// answered first, requests after it wait for it.
/// </summary>
public sealed class RequestQueue(int capacity, int parallel = 1)
{
    private readonly Lock _lock = new();
    private readonly LinkedList<Waiter> _waiting = new();
    private int _parallel = Math.Max(1, parallel);
    private int _held;
    private double _averageSeconds = 1;

    public int Capacity { get; } = capacity;

    /// <summary>Requests that generate at once: the served model's <c>Parallel</c> (set when a model loads).</summary>
    public int Parallel
    {
        get { lock (_lock) return _parallel; }
        set
        {
            lock (_lock)
            {
                _parallel = Math.Max(1, value);
                Grant();
            }
        }
    }

    /// <summary>Requests waiting for a slot (not counting those generating).</summary>
    public int Depth { get { lock (_lock) return _waiting.Count; } }

    /// <summary>Requests generating now.</summary>
    public int Active { get { lock (_lock) return Math.Min(_held, _parallel); } }

    /// <summary>Whether a request is generating or waiting.</summary>
    public bool Busy { get { lock (_lock) return _held > 0 || _waiting.Count > 0; } }

    /// <summary>Seconds a refused client should wait: the requests ahead of it, served Parallel at a time, at the recent average request time.</summary>
    public int RetryAfterSeconds
    {
        get
        {
            lock (_lock) return (int)Math.Clamp(Math.Ceiling((_held + _waiting.Count) * _averageSeconds / _parallel), 1, 3600);
        }
    }

    /// <summary>A slot on the runtime, or null when the queue is full. Dispose the lease to release it.</summary>
    public Task<Lease?> EnterAsync(CancellationToken cancellationToken) => Enter(exclusive: false, cancellationToken);

    /// <summary>Every slot, once the requests ahead have finished (an adapter switch); null when the queue is full.</summary>
    public Task<Lease?> EnterExclusiveAsync(CancellationToken cancellationToken) => Enter(exclusive: true, cancellationToken);

    private Task<Lease?> Enter(bool exclusive, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Waiter waiter;
        lock (_lock)
        {
            if (_waiting.Count == 0 && Fits(exclusive)) return Task.FromResult<Lease?>(Take(exclusive));
            if (_waiting.Count >= Capacity) return Task.FromResult<Lease?>(null);
            waiter = new Waiter(exclusive);
            waiter.Node = _waiting.AddLast(waiter);
        }
        if (cancellationToken.CanBeCanceled)
            waiter.Registration = cancellationToken.Register(() =>
            {
                lock (_lock)
                {
                    if (waiter.Node?.List is null) return; // already granted: the caller has its lease
                    _waiting.Remove(waiter.Node);
                    Grant(); // an exclusive waiter at the head may have been holding others back
                }
                waiter.Done.TrySetCanceled(cancellationToken);
            });
        return waiter.Done.Task;
    }

    private bool Fits(bool exclusive) => exclusive ? _held == 0 : _held < _parallel;

    private Lease Take(bool exclusive)
    {
        int slots = exclusive ? _parallel : 1;
        _held += slots;
        return new Lease(this, slots);
    }

    /// <summary>Hands free slots to waiters in arrival order (under the lock).</summary>
    private void Grant()
    {
        while (_waiting.First is { } first && Fits(first.Value.Exclusive))
        {
            _waiting.RemoveFirst();
            var waiter = first.Value;
            waiter.Node = null;
            waiter.Registration.Unregister(); // not Dispose: that would wait for a callback blocked on this lock
            waiter.Done.TrySetResult(Take(waiter.Exclusive));
        }
    }

    private void Leave(int slots, TimeSpan held)
    {
        lock (_lock)
        {
            _averageSeconds = 0.8 * _averageSeconds + 0.2 * held.TotalSeconds;
            _held -= slots;
            Grant();
        }
    }

    private sealed class Waiter(bool exclusive)
    {
        public bool Exclusive { get; } = exclusive;
        public LinkedListNode<Waiter>? Node { get; set; }
        public CancellationTokenRegistration Registration { get; set; }
        public TaskCompletionSource<Lease?> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public sealed class Lease(RequestQueue queue, int slots) : IDisposable
    {
        private readonly long _start = System.Diagnostics.Stopwatch.GetTimestamp();
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) queue.Leave(slots, System.Diagnostics.Stopwatch.GetElapsedTime(_start));
        }
    }
}
