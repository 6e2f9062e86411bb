defmodule Tether.Worker do
  @moduledoc """
  A Python worker process driven from Elixir.

      {:ok, w} = Tether.Worker.start_link(python: ".venv/bin/python", modules: ["my_handlers"])
      {:ok, 3} = Tether.Worker.call(w, "my_handlers", "add", [1, 2])

  Only functions of the listed modules can be called. Large arguments and
  results travel through shared memory in `/dev/shm`. If Python crashes the
  caller gets `{:error, {:worker_exit, status}}` and the next call starts a
  fresh worker; Python exceptions come back as
  `{:error, {:python, type, message, traceback}}`.
  """

  @type option ::
          {:python, String.t()}
          | {:modules, [String.t()]}
          | {:env, [{String.t(), String.t()}]}
          | {:shm_threshold, non_neg_integer()}
          | {:binaries, :bytes | :str}

  @doc "Start a worker linked to the caller."
  @spec start_link([option()]) :: GenServer.on_start()
  def start_link(opts), do: :tether_worker.start_link(Map.new(opts))

  @doc "Call `module.function(*args)` in Python."
  @spec call(GenServer.server(), String.t(), String.t(), list(), timeout()) :: {:ok, term()} | {:error, term()}
  def call(worker, module, function, args, timeout \\ 5000),
    do: :tether_worker.call(worker, module, function, args, timeout)

  @doc "Stop the worker (and its Python process)."
  @spec stop(GenServer.server()) :: :ok
  def stop(worker), do: :tether_worker.stop(worker)
end
