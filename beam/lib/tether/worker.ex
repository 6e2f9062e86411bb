defmodule Tether.Worker do
  @moduledoc """
  One Python process, driven from Elixir: `python -m tether.worker` behind a
  GenServer (the Erlang module `:tether_worker`).

      children = [
        {Tether.Worker, name: MyApp.Python, python: "/srv/venv/bin/python", modules: ["my_models"]}
      ]
      Supervisor.start_link(children, strategy: :one_for_one)

      {:ok, 3} = Tether.Worker.call(MyApp.Python, "my_models", "add", [1, 2])

  `start_link/1` returns only once Python has imported every module and
  answered the handshake, so a worker that cannot work never starts:

    * `{:error, {:python_not_found, python}}`;
    * `{:error, {:python_not_executable, python, what}}`: a directory, or a file
      without an execute bit (`:not_executable`);
    * `{:error, {:import_error, module, type, message, traceback}}`;
    * `{:error, {:incompatible, %{python: vsn, beam: vsn}}}`: tether versions that
      cannot talk (majors differ, or minors for 0.x);
    * `{:error, {:tether_not_installed, python, stderr}}`: that interpreter cannot
      import tether (install the wheel into its environment, or give that
      environment's interpreter);
    * `{:error, {:exited_before_ready, status, stderr}}`: Python died first;
    * `{:error, {:start_timeout, ms, stderr}}`.

  Bad options raise `ArgumentError`, and so do options that are not a
  keyword list (a map, say).

  Calls run one at a time, in order; use `Tether.Pool` to run them
  concurrently. Errors a call returns:

    * `{:python, type, message, traceback}`: the function raised, or its result
      could not be encoded (`type` is `"EncodeError"`);
    * `{:undefined_function, module, function}`: not on the allow-list;
    * `:timeout`: past the deadline (time spent queued counts). Python gets
      SIGUSR1 and drops the call, or is killed and replaced after
      `:cancel_grace` ms; the next call waits only until Python has let go
      of it (at most `:cancel_grace` ms and a restart);
    * `{:worker_exit, status}`: Python died during the call (a fresh one starts);
    * `{:message_too_large, size, max}`: arguments kept out of shared memory by
      `:shm_threshold` but larger than `:max_message`;
    * `{:worker_down, why}`: the worker process itself is gone;
    * `{:bad_etf, why}`: the reply names atoms this node does not know
      (no atom is ever created from a reply);
    * `{:embedded_shm, path, why}`: a result in shared memory could not be
      read; an embedded frame that does not decode gives `Tether.decode/1`'s
      reason (e.g. `{:unsupported_compression, :zstd, how_to_fix}`).
  """

  @typedoc "A running worker: its pid or name."
  @type worker :: GenServer.server()

  @type option ::
          {:modules, [String.t()]}
          | {:python, String.t()}
          | {:name, GenServer.name()}
          | {:env, [{String.t(), String.t()}] | %{String.t() => String.t()}}
          | {:cd, String.t()}
          | {:shm_threshold, non_neg_integer()}
          | {:shm_dir, String.t()}
          | {:shm_keep, timeout()}
          | {:max_message, pos_integer()}
          | {:binaries, :bytes | :str}
          | {:log_level, :debug | :info | :warning | :error | :critical}
          | {:start_timeout, timeout()}
          | {:cancel_grace, non_neg_integer()}
          | {:spin_us, 0..10_000}

  @type call_option :: {:timeout, timeout()} | {:tables, :arrow | :rows | :columns}

  @doc """
  A child specification: `{Tether.Worker, opts}` in a supervisor's children.
  The child id is the `:name` when there is one.

      iex> Tether.Worker.child_spec(name: :py, modules: ["m"]).id
      :py
  """
  @spec child_spec([option()]) :: Supervisor.child_spec()
  def child_spec(opts) do
    Tether.Options.keyword!(opts, "Tether.Worker.child_spec/1")
    %{id: Keyword.get(opts, :name, __MODULE__), start: {__MODULE__, :start_link, [opts]}, type: :worker}
  end

  @doc """
  Start a worker linked to the caller.

  Options:

    * `:modules` (required): the Python modules whose public functions may be called;
    * `:python`: the interpreter, a path or a name on `PATH` (default `"python3"`);
    * `:name`: register the worker (an atom, `{:global, term}`, `{:via, module, term}`);
    * `:env`: extra environment variables; `:cd`: the working directory;
    * `:start_timeout`: ms for Python to import the modules and answer (default 60 000),
      so slow imports never count against a call's timeout;
    * `:cancel_grace`: ms a cancelled call may take to stop before Python is killed (default 1000);
    * `:shm_threshold`: arguments larger than this many bytes go through shared memory
      (default 1 MiB); `:shm_dir`: where the worker's private directory goes (default `/dev/shm`);
    * `:shm_keep`: ms the shared memory kept between calls (the arguments file, Python's reply
      regions) stays after the last call that used it ended, so that large calls in a row use
      memory already faulted in (default 30 000; `:infinity` keeps it for the worker's life).
      Then the file is removed and Python closes its mapping and regions. `info/1` shows the
      file's size;
    * `:max_message`: the largest call sent through the pipe, in bytes (default 256 MiB);
    * `:binaries`: `:bytes` (default) or `:str`, how Elixir binaries arrive in Python;
    * `:log_level`: Python's root logger level (`:debug` ... `:critical`; default Python's,
      `:warning`): which `logging` records reach `Logger`;
    * `:spin_us`: microseconds Python polls for the next call before it sleeps (default 200,
      0 to 10 000; `0` never spins). It spends CPU an idle worker would not, to save the
      wake-up of a sleeping process on calls that follow each other closely.

  ```elixir
  {:ok, w} = Tether.Worker.start_link(python: ".venv/bin/python", modules: ["my_handlers"])
  ```
  """
  @spec start_link([option()]) :: GenServer.on_start()
  def start_link(opts) do
    Tether.Options.keyword!(opts, "Tether.Worker.start_link/1")
    opts |> :tether_worker.start_link() |> started(:worker, opts)
  end

  @doc """
  As `start_link/1`, without a link: a worker whose failure must not take the caller down.

  ```elixir
  {:ok, w} = Tether.Worker.start(python: ".venv/bin/python", modules: ["my_handlers"])
  ```

  A worker that cannot start is an error, not a crash:

      iex> Tether.Worker.start(python: "/no/such/python", modules: ["my_handlers"])
      {:error, {:python_not_found, "/no/such/python"}}
  """
  @spec start([option()]) :: GenServer.on_start()
  def start(opts) do
    Tether.Options.keyword!(opts, "Tether.Worker.start/1")
    opts |> :tether_worker.start() |> started(:worker, opts)
  end

  @doc false
  @spec started({:ok, pid()} | {:error, term()} | :ignore, :worker | :pool, keyword()) ::
          {:ok, pid()} | {:error, term()} | :ignore
  def started({:error, {:bad_option, _, _} = reason}, kind, opts), do: Tether.Options.raise!(kind, opts, reason)
  def started(result, _kind, _opts), do: result

  @doc """
  Call `module.function(*args)` in Python: `{:ok, result}` or `{:error, reason}`.

  The last argument is a timeout in ms (default 5000) or options:
  `timeout:` and `tables:` (`:arrow`, the default, gives Arrow IPC bytes;
  `:rows` a list of maps; `:columns` a map of lists).

  ```elixir
  {:ok, 3} = Tether.Worker.call(w, "my_handlers", "add", [1, 2])
  {:ok, rows} = Tether.Worker.call(w, "my_handlers", "table", [3], tables: :rows, timeout: 10_000)
  ```
  """
  @spec call(worker(), String.t() | atom(), String.t() | atom(), list(), timeout() | [call_option()]) ::
          {:ok, term()} | {:error, term()}
  def call(worker, module, function, args, opts \\ []) do
    opts = call_opts(opts)
    result = :tether_worker.call(worker, module, function, args, opts)
    checked(result, {:call, :worker}, {module, function, args}, opts)
  end

  @doc """
  As `call/5`, returning the result or raising `Tether.Error`.

  ```elixir
  3 = Tether.Worker.call!(w, "my_handlers", "add", [1, 2])
  ```
  """
  @spec call!(worker(), String.t() | atom(), String.t() | atom(), list(), timeout() | [call_option()]) :: term()
  def call!(worker, module, function, args, opts \\ []) do
    case call(worker, module, function, args, opts) do
      {:ok, value} -> value
      {:error, reason} -> raise Tether.Error, reason: reason
    end
  end

  @doc """
  What the worker's Python reported at its handshake (`:tether`, `:python`,
  `:modules`, `:speedups`, `:messages`: the forms it reads, compact messages
  among them, docs/format.md §8, ...; `:markers`, the argument markers it
  reads, and `:notices`, which Python sends under string keys so that an
  older node decodes the handshake without a new atom: a key newer than this
  node stays a string) with its `:os_pid`, `:phase`, `:queued` calls and
  `:running`: the call Python is running now, as `%{module:, function:,
  caller:, seconds:}` (seconds since it was sent; a `stats/1` request shows
  as `module: :stats`), or nil: also while `:phase` is `:cancelling`, when
  the call whose caller gave up is still stopping; and
  `:args_file_bytes`, the size of its shared-memory arguments file now
  (`:shm_keep`). The worker process answers it without asking Python, so
  during a call too (after the step it is in: writing a large call's
  arguments to shared memory can take tens of ms).

  ```elixir
  %{python: "3.11.7", os_pid: pid, running: nil} = Tether.Worker.info(w)
  ```
  """
  @spec info(worker()) :: map()
  def info(worker) do
    case :tether_worker.info(worker) do
      {:error, _} = error -> checked(error)
      info -> info
    end
  end

  @doc """
  The Python worker's metrics: `tether.metrics.snapshot()` (operations by
  kind, format and route; alerts; memory) with a `"worker"` entry: the calls
  it answered and the stages of the last one, in seconds. Keys are strings.
  The request waits behind the worker's calls, so its `"running"` is nil:
  `info/1` shows the call running now, and so does `tether stats <os pid>`
  from a shell.
  `{:error, {:python, "MetricsUnavailable", message, ""}}` when the worker's
  tether has no metrics module.

  ```elixir
  {:ok, %{"worker" => %{"calls" => calls, "last_call" => last}}} = Tether.Worker.stats(w)
  ```
  """
  @spec stats(worker(), timeout()) :: {:ok, map()} | {:error, term()}
  def stats(worker, timeout \\ 5000) do
    Tether.Options.timeout!(timeout, "Tether.Worker.stats/2's timeout")
    worker |> :tether_worker.stats(timeout) |> checked()
  end

  @doc """
  As `call/5`, and what the worker measured of the call: `:queue_time` (in
  native time units, as in telemetry: `System.convert_time_unit(t, :native, :microsecond)`),
  `:bytes_in`, `:bytes_out`, `:route` (`:inline` or `:shm`) and `:stages`,
  microseconds spent in each part of the call, measured in place: `:encode`,
  `:write` (the arguments file), `:python` (request out to reply in),
  `:read` (the reply's frames out of shared memory) and `:decode`.

  ```elixir
  {{:ok, 3}, %{stages: %{python: us}}} = Tether.Worker.measure(w, "my_handlers", "add", [1, 2])
  ```
  """
  @spec measure(worker(), String.t() | atom(), String.t() | atom(), list(), timeout() | [call_option()]) ::
          {{:ok, term()} | {:error, term()}, map()}
  def measure(worker, module, function, args, opts \\ []) do
    opts = call_opts(opts)
    {result, stats} = :tether_worker.measure(worker, module, function, args, opts)
    {checked(result, {:call, :worker}, {module, function, args}, opts), stats}
  end

  @doc """
  Stop the worker and its Python process.

  ```elixir
  {:ok, w} = Tether.Worker.start(python: ".venv/bin/python", modules: ["my_handlers"])
  :ok = Tether.Worker.stop(w)
  ```
  """
  @spec stop(worker()) :: :ok
  def stop(worker), do: :tether_worker.stop(worker)

  @doc false
  @spec call_opts(timeout() | keyword()) :: timeout() | keyword()
  def call_opts(timeout) when (is_integer(timeout) and timeout >= 0) or timeout == :infinity, do: timeout
  def call_opts(opts) when is_list(opts), do: opts

  def call_opts(other),
    do: raise(ArgumentError, "expected a timeout or a keyword list of call options, got: #{inspect(other)}")

  @doc false
  @spec checked({:ok, term()} | {:error, term()}) :: {:ok, term()} | {:error, term()}
  def checked({:error, {tag, _, _} = reason}) when tag in [:bad_option, :bad_argument],
    do: raise(ArgumentError, Tether.Options.message(reason))

  # A pool given where a worker is expected, or the reverse: a programming error.
  def checked({:error, {wrong, message}}) when wrong in [:not_a_worker, :not_a_pool],
    do: raise(ArgumentError, message)

  def checked(result), do: result

  @doc false
  # A call's result, its option and argument errors worded for Elixir (`kind`: whose call options).
  @spec checked({:ok, term()} | {:error, term()}, {:call, :worker | :pool}, {term(), term(), term()}, term()) ::
          {:ok, term()} | {:error, term()}
  def checked({:error, {:bad_option, _, _} = reason}, kind, _target, opts),
    do: Tether.Options.raise!(kind, opts, reason)

  def checked({:error, {:bad_argument, _, _} = reason}, _kind, target, _opts),
    do: Tether.Options.raise!(:target, target, reason)

  def checked(result, _kind, _target, _opts), do: checked(result)
end
