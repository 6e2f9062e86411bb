defmodule Tether.TestPython do
  @moduledoc false
  import Bitwise
  # Options that start a real `python -m tether.worker` from this checkout
  # (TETHER_PYTHON comes from the Makefile's environment).

  @tests Path.expand("../../../tests", __DIR__)
  @src Path.expand("../../../src", __DIR__)

  def python, do: System.get_env("TETHER_PYTHON") || raise("set TETHER_PYTHON (make test does)")

  def pythonpath(extra \\ []), do: Enum.join(extra ++ [@tests, @src], ":")

  def opts(extra \\ []) do
    Keyword.merge([python: python(), modules: ["beam_handlers"], env: [{"PYTHONPATH", pythonpath()}]], extra)
  end

  # A fresh, empty directory outside the project, removed when the test ends. unique_integer
  # restarts with each VM: the OS pid and random bits keep two suites on one box (or a killed
  # run's leftovers) from sharing a directory, and mkdir! (not mkdir_p!) proves it is new.
  def tmp_dir! do
    name = "tether-test-#{System.pid()}-#{System.unique_integer([:positive])}-#{:rand.uniform(1 <<< 40)}"
    dir = Path.join(System.tmp_dir!(), name)
    File.mkdir!(dir)
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

defmodule Tether.TestWait do
  @moduledoc false
  # Polls `fun` until it returns truthy, every 25 ms for up to 5 s; then the test fails.

  import ExUnit.Assertions, only: [flunk: 1]

  def wait_until(fun, tries \\ 200) do
    cond do
      fun.() -> :ok
      tries == 0 -> flunk("condition not met")
      true -> Process.sleep(25) && wait_until(fun, tries - 1)
    end
  end
end
