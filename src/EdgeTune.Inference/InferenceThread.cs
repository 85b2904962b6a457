using System.Collections.Concurrent;

namespace EdgeTune.Inference;

/// <summary>
/// One long-lived thread that makes every llama.cpp call of a runtime (load, decode, free).
/// </summary>
/// <remarks>
/// LLamaSharp's CPU backend computes through OpenMP (libgomp), and libgomp keeps a separate team of worker threads
/// for every thread that has ever started a parallel region, for as long as that thread lives. Once the workers of
/// all teams outnumber the cores, libgomp "throttles": waiting workers spin ~1000 iterations instead of ~300000 and
/// then sleep in the kernel, so each of the dozens of barriers per token costs a futex wake. Calling llama_decode
/// from thread-pool threads (Task.Run per request) therefore halves throughput for the whole process, and the slowdown
/// outlives the agent because pool threads never exit. Keeping all compute on this one thread keeps one team; the
/// thread ends on <see cref="Dispose"/>, which frees that team too.
/// </remarks>
public sealed class InferenceThread : IDisposable
{
    private readonly BlockingCollection<Action> _work = new();
    private readonly Thread _thread;
    private int _disposed;

    public InferenceThread(string name)
    {
        _thread = new Thread(Loop, maxStackSize: 8 << 20) { IsBackground = true, Name = name };
        _thread.Start();
    }

    public bool IsCurrent => Thread.CurrentThread == _thread;

    /// <summary>The thread's managed id (tests and benchmarks check where work ran).</summary>
    public int ManagedThreadId => _thread.ManagedThreadId;

    public bool IsAlive => _thread.IsAlive;

    private void Loop()
    {
        foreach (var item in _work.GetConsumingEnumerable()) item();
    }

    /// <summary>Queues <paramref name="work"/>; a token cancelled before it starts cancels it unrun.</summary>
    public Task<T> RunAsync<T>(Func<T> work, CancellationToken cancellationToken = default)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Item()
        {
            if (cancellationToken.IsCancellationRequested)
            {
                done.TrySetCanceled(cancellationToken);
                return;
            }
            try
            {
                done.TrySetResult(work());
            }
            catch (OperationCanceledException e)
            {
                done.TrySetCanceled(e.CancellationToken);
            }
            catch (Exception e)
            {
                done.TrySetException(e);
            }
        }
        if (IsCurrent)
        {
            Item();
            return done.Task;
        }
        try
        {
            _work.Add(Item, CancellationToken.None);
        }
        catch (InvalidOperationException)
        {
            throw new ObjectDisposedException(_thread.Name, "the model has been unloaded");
        }
        return done.Task;
    }

    /// <summary>Runs <paramref name="work"/> on the thread and waits for it.</summary>
    public T Run<T>(Func<T> work, CancellationToken cancellationToken = default) =>
        RunAsync(work, cancellationToken).GetAwaiter().GetResult();

    /// <summary>Lets queued work finish, then ends the thread (and waits for it unless called from it).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _work.CompleteAdding();
        if (IsCurrent) return;
        _thread.Join();
        _work.Dispose();
    }
}
