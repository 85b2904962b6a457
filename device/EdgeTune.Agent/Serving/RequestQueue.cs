namespace EdgeTune.Agent.Serving;

/// <summary>
/// Back-pressure in front of the runtime: one request generates at a time and at most <c>capacity</c> wait.
/// A request that finds the queue full is refused at once (the API answers 429 with Retry-After).
/// </summary>
public sealed class RequestQueue(int capacity)
{
    private readonly SemaphoreSlim _slot = new(1, 1);
    private int _admitted;
    private double _averageSeconds = 1;

    public int Capacity { get; } = capacity;

    /// <summary>Requests waiting for the runtime (not counting the one generating).</summary>
    public int Depth => Math.Max(0, Volatile.Read(ref _admitted) - 1);

    /// <summary>Whether a request is generating or waiting.</summary>
    public bool Busy => Volatile.Read(ref _admitted) > 0;

    /// <summary>Seconds a refused client should wait: the queue's length times the recent average request time.</summary>
    public int RetryAfterSeconds => (int)Math.Clamp(Math.Ceiling(Volatile.Read(ref _admitted) * _averageSeconds), 1, 3600);

    /// <summary>A lease on the runtime, or null when the queue is full. Dispose the lease to release it.</summary>
    public async Task<Lease?> EnterAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Increment(ref _admitted) > Capacity + 1)
        {
            Interlocked.Decrement(ref _admitted);
            return null;
        }
        try
        {
            await _slot.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Interlocked.Decrement(ref _admitted);
            throw;
        }
        return new Lease(this);
    }

    private void Leave(TimeSpan held)
    {
        _averageSeconds = 0.8 * _averageSeconds + 0.2 * held.TotalSeconds;
        _slot.Release();
        Interlocked.Decrement(ref _admitted);
    }

    public sealed class Lease(RequestQueue queue) : IDisposable
    {
        private readonly long _start = System.Diagnostics.Stopwatch.GetTimestamp();
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) queue.Leave(System.Diagnostics.Stopwatch.GetElapsedTime(_start));
        }
    }
}
