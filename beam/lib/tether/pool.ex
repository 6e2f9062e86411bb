defmodule Tether.Pool do
  @moduledoc """
  A pool of Python workers (the Erlang module `:tether_pool`): calls run
  concurrently, one per member.

      children = [
        {Tether.Pool, name: MyApp.Models, size: 4, python: "/srv/venv/bin/python", modules: ["my_models"]}
      ]
      Supervisor.start_link(children, strategy: :one_for_one)

      {:ok, scores} = Tether.Pool.call(MyApp.Models, "my_models", "score", [batch], timeout: 10_000)

  A call goes straight to the member with the fewest calls routed to it, and
  waits in that member's own queue when every member is busy: the pool
  process takes no part in it, and a member sends its next call as soon as a
  reply arrives. When the members' queues hold `:max_queue` calls, a call
  returns `{:error, :overloaded}` at once (and emits
  `[:tether, :pool, :overloaded]`). Waiting counts against the call's
  timeout. A call queued at a member waits for the calls ahead of it there,
  a timed-out one included until Python has dropped it (at most
  `:cancel_grace`). A call with `:checkout_timeout`, and `transaction/3`,
  check a member out instead: one with no calls routed to it, which takes no
  other calls while held.

  `start_link/1` starts every member together and returns once all have
  answered their handshake, or the first member's error (see
  `Tether.Worker.start_link/1`). A member that dies is replaced; one that
  cannot start again is retried after 100 ms, doubling up to 10 s. A member
  whose call timed out goes back on the route only once Python has dropped
  that call (or the member was replaced).

  Defaults: `size` is the CPUs the node may run on,
  `:erlang.system_info(:logical_processors_available)` (each member is one Python
  process, and Python runs one call at a time); not the schedulers, so an
  emulator started with `+S 1` still gets a member per CPU. `max_queue` is 100.

  Only `:spinners` members poll for their next call (`:spin_us`); the others
  sleep in `read()` between calls. The default is one fewer than
  the CPUs, at least 1: a polling Python holds a core while
  it waits, and the pool's traffic needs the BEAM's. On 2 cores, 8 callers on a
  pool of 2 took 17-19 µs a call with one polling member, against 20-26 µs with
  both; a pool of 4, 21 µs against 43 µs. An idle polling member is handed out
  first, and a member started later (a replacement) polls while fewer than
  `:spinners` do. `spinners: 0` stops all polling; more than `:size` means all.

  With `pin: true` (the default), a pool that has both polling and sleeping
  members sets their CPU affinity: each polling member keeps to a CPU of its
  own (the node's pools take turns, so that two pools start on different
  CPUs) and the sleeping members to the rest, among the CPUs the Python
  process may use. Otherwise the kernel may wake a sleeping member on a
  polling one's CPU, where the two share it: on 2 cores, a pool of 2 serving
  8 callers took 13-14 µs a call pinned, and 15-20 µs whenever the two shared
  a CPU, which happened in about half of the unpinned runs. Use `pin: false`
  where CPUs are assigned by other means (several nodes on one host, a
  cpuset per service), or when the pool mostly idles.

  With `sched_batch: true` (the default), a pinned sleeping member, which
  shares its CPU with the BEAM's schedulers, serves its calls under Linux's
  `SCHED_BATCH`: woken by a call, it waits for the scheduler to give up the
  CPU instead of preempting it (on 2 cores, a pool of 2 took 14.6 µs a call
  under it, against 16.0 µs). When its wake-ups wait 250 µs each on average
  (a BEAM that keeps the CPU busy), it goes back to the normal policy for 1
  s, then 2, 4, ... 64 s. Threads and processes a handler starts inherit the
  policy the member has then. `sched_batch: false` keeps the normal policy
  (and the pinning); a Python started under another policy (`chrt`,
  systemd's `CPUSchedulingPolicy`) keeps its own. `Tether.Worker.stats/1`
  shows which under `"worker" => "sched"`.
  """

  @typedoc "A running pool: its pid or name."
  @type pool :: GenServer.server()

  @type option ::
          Tether.Worker.option()
          | {:size, pos_integer()}
          | {:max_queue, non_neg_integer()}
          | {:spinners, non_neg_integer()}
          | {:pin, boolean()}
          | {:sched_batch, boolean()}

  @type call_option ::
          Tether.Worker.call_option()
          | {:checkout_timeout, timeout()}

  @doc """
  A child specification: `{Tether.Pool, opts}` in a supervisor's children.

      iex> Tether.Pool.child_spec(name: :models, modules: ["m"]).id
      :models
  """
  @spec child_spec([option()]) :: Supervisor.child_spec()
  def child_spec(opts) do
    Tether.Options.keyword!(opts, "Tether.Pool.child_spec/1")

    %{
      id: Keyword.get(opts, :name, __MODULE__),
      start: {__MODULE__, :start_link, [opts]},
      type: :worker,
      shutdown: 10_000
    }
  end

  @doc """
  Start a pool linked to the caller. Options: those of
  `Tether.Worker.start_link/1` (`:name` names the pool), plus `:size`
  (members), `:max_queue` (callers that may wait), `:spinners` (members
  that poll for their next call), `:pin` (default `true`: polling members
  on CPUs of their own, sleeping ones on the rest) and `:sched_batch`
  (default `true`: pinned sleeping members under `SCHED_BATCH` while their
  CPU has room); see the module doc.

  ```elixir
  {:ok, pool} = Tether.Pool.start_link(modules: ["my_handlers"], size: 4)
  ```
  """
  @spec start_link([option()]) :: GenServer.on_start()
  def start_link(opts) do
    Tether.Options.keyword!(opts, "Tether.Pool.start_link/1")
    opts |> :tether_pool.start_link() |> Tether.Worker.started(:pool, opts)
  end

  @doc """
  As `start_link/1`, without a link: a pool whose failure must not take the caller down.

  ```elixir
  {:error, {:import_error, "broken", _, _, _}} = Tether.Pool.start(modules: ["broken"], size: 2)
  ```
  """
  @spec start([option()]) :: GenServer.on_start()
  def start(opts) do
    Tether.Options.keyword!(opts, "Tether.Pool.start/1")
    opts |> :tether_pool.start() |> Tether.Worker.started(:pool, opts)
  end

  @doc """
  Call `module.function(*args)` on a free member: `{:ok, result}` or
  `{:error, reason}`, with the reasons of `Tether.Worker.call/5` plus
  `:overloaded`, `:checkout_timeout` and `{:no_worker, why}` (no member is
  running and the last could not start: `why` is its start error, answered at
  once while the pool keeps trying).

  Options: `timeout:` (ms for the whole call, waiting included; default
  5000), `checkout_timeout:` (ms to wait for a member), `tables:`. A bare
  integer is the timeout.

  ```elixir
  {:ok, 3} = Tether.Pool.call(pool, "my_handlers", "add", [1, 2])
  ```
  """
  @spec call(pool(), String.t() | atom(), String.t() | atom(), list(), timeout() | [call_option()]) ::
          {:ok, term()} | {:error, term()}
  def call(pool, module, function, args, opts \\ []) do
    opts = Tether.Worker.call_opts(opts)

    pool
    |> :tether_pool.call(module, function, args, opts)
    |> Tether.Worker.checked({:call, :pool}, {module, function, args}, opts)
  end

  @doc """
  As `call/5`, returning the result or raising `Tether.Error`.

  ```elixir
  3 = Tether.Pool.call!(pool, "my_handlers", "add", [1, 2])
  ```
  """
  @spec call!(pool(), String.t() | atom(), String.t() | atom(), list(), timeout() | [call_option()]) :: term()
  def call!(pool, module, function, args, opts \\ []) do
    case call(pool, module, function, args, opts) do
      {:ok, value} -> value
      {:error, reason} -> raise Tether.Error, reason: reason
    end
  end

  @doc """
  Run `fun.(worker)` with one member checked out: several calls on the same
  Python process. `checkout_timeout` bounds the wait for a member. Returns
  what `fun` returns, or `{:error, :overloaded | :checkout_timeout}` or
  `{:error, {:no_worker, why}}` (see `call/5`).

  ```elixir
  Tether.Pool.transaction(pool, fn w ->
    {:ok, _} = Tether.Worker.call(w, "my_handlers", "load", ["model.bin"])
    Tether.Worker.call(w, "my_handlers", "predict", [x])
  end)
  ```
  """
  @spec transaction(pool(), (Tether.Worker.worker() -> result), timeout()) :: result | {:error, term()}
        when result: term()
  def transaction(pool, fun, checkout_timeout \\ 5000) when is_function(fun, 1) do
    Tether.Options.timeout!(checkout_timeout, "Tether.Pool.transaction/3's checkout_timeout")
    pool |> :tether_pool.transaction(fun, checkout_timeout) |> wrong_server!()
  end

  @doc """
  The pool's members and what they are doing: `:size`, `:workers`, `:idle`,
  `:busy`, `:starting`, `:cancelling`, `:spinning` (members set to poll for
  their next call), `:queued`.

  ```elixir
  %{size: 4, idle: 4, queued: 0} = Tether.Pool.status(pool)
  ```
  """
  @spec status(pool()) :: map()
  def status(pool) do
    case :tether_pool.status(pool) do
      {:error, _} = error -> wrong_server!(error)
      status -> status
    end
  end

  @doc """
  Stop the pool, its members and their Python processes.

  ```elixir
  {:ok, pool} = Tether.Pool.start_link(python: ".venv/bin/python", modules: ["my_handlers"], size: 4)
  :ok = Tether.Pool.stop(pool)
  ```
  """
  @spec stop(pool()) :: :ok
  def stop(pool), do: :tether_pool.stop(pool)

  # A worker given where a pool is expected: a programming error, named.
  defp wrong_server!({:error, {:not_a_pool, message}}), do: raise(ArgumentError, message)
  defp wrong_server!(result), do: result
end
