defmodule Tether.TestPython do
  @moduledoc false
  # Options that start a real `python -m tether.worker` from this checkout
  # (TETHER_PYTHON comes from the Makefile's environment).

  @tests Path.expand("../../../tests", __DIR__)
  @src Path.expand("../../../src", __DIR__)

  def python, do: System.get_env("TETHER_PYTHON") || raise("set TETHER_PYTHON (make test does)")

  def pythonpath(extra \\ []), do: Enum.join(extra ++ [@tests, @src], ":")

  def opts(extra \\ []) do
    Keyword.merge([python: python(), modules: ["beam_handlers"], env: [{"PYTHONPATH", pythonpath()}]], extra)
  end

  # A fresh directory outside the project, removed when the test ends.
  def tmp_dir! do
    dir = Path.join(System.tmp_dir!(), "tether-test-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    ExUnit.Callbacks.on_exit(fn -> File.rm_rf!(dir) end)
    dir
  end

  # Stop a process started by the test; it may already be gone.
  def stop(pid) do
    if Process.alive?(pid), do: GenServer.stop(pid, :normal, 15_000)
  catch
    :exit, _ -> :ok
  end
end

defmodule Tether.TestLogHandler do
  @moduledoc false
  # An Erlang :logger handler that sends every event to a test process.

  def attach(id) do
    :ok = :logger.add_handler(id, __MODULE__, %{config: %{pid: self()}, level: :all})
  end

  def log(event, %{config: %{pid: pid}}), do: send(pid, {:log_event, event})
end
