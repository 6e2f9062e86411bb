defmodule Tether.OpsTest do
  # What an operator sees when Pythons and pool members die: log lines and telemetry,
  # against real `python -m tether.worker` processes (make test sets TETHER_PYTHON).
  use ExUnit.Case, async: false
  import Tether.TestWait
  alias Tether.TestPython

  @m "beam_handlers"

  setup do
    test = self()
    id = {:tether_ops_test, make_ref()}
    :ok = :telemetry.attach_many(id, :tether_telemetry.events(), fn e, m, md, _ -> send(test, {:event, e, m, md}) end, nil)
    Tether.TestLogHandler.attach(:tether_ops_log)

    on_exit(fn ->
      :telemetry.detach(id)
      :logger.remove_handler(:tether_ops_log)
    end)
  end

  defp start_pool(extra) do
    {:ok, pool} = Tether.Pool.start_link(TestPython.opts(extra))
    on_exit(fn -> TestPython.stop(pool) end)
    pool
  end

  # The events and log lines of the starts before the test's own.
  defp flush do
    receive do
      {:event, _, _, _} -> flush()
      {:log_event, _} -> flush()
    after
      0 -> :ok
    end
  end

  defp text(msg), do: msg |> format_msg() |> IO.iodata_to_binary()
  defp format_msg({:string, s}), do: s
  defp format_msg({:report, r}), do: inspect(r)
  defp format_msg({format, args}), do: :io_lib.format(format, args)

  defp fire(w, name) do
    assert {:ok, true} = Tether.Worker.call(w, @m, "raise_alert", [name, 0.25])
    assert_receive {:event, [:tether, :alert], _, %{name: ^name, state: :firing, worker: ^w}}
  end

  defp cleared(name, w, os_pid) do
    message = "cleared: Python (os pid #{os_pid}) exited"

    assert_receive {:event, [:tether, :alert], %{system_time: _},
                    %{name: ^name, state: :cleared, message: ^message, suggestion: "look at the disk",
                      figures: %{"ratio" => 0.25, "worst" => :infinity}, worker: ^w, os_pid: ^os_pid}}
  end

  test "a pool member killed outright is logged, and its Python's exit and alerts reported once" do
    pool = start_pool(size: 2)
    [m | _] = Tether.Pool.status(pool).workers
    os_pid = Tether.Worker.info(m).os_pid
    flush()

    ExUnit.CaptureLog.capture_log(fn ->
      fire(m, "ops_kill")
      # Python's own records from a member name its pool too.
      assert_receive {:log_event, %{meta: %{python_logger: "tether.alerts", tether_worker: ^m, tether_pool: ^pool}}}
      Process.exit(m, :kill)

      assert_receive {:log_event, %{level: :warning, msg: msg, meta: %{domain: [:tether], tether_worker: ^m, os_pid: ^os_pid, tether_pool: ^pool}}}
      assert text(msg) =~ "tether pool #{:erlang.pid_to_list(pool)}: member #{:erlang.pid_to_list(m)} (Python os pid #{os_pid}) went down (killed)"
      assert_receive {:event, [:tether, :worker, :exit], %{system_time: _}, %{worker: ^m, os_pid: ^os_pid, reason: {:worker_down, :killed}}}
      cleared("ops_kill", m, os_pid)
      assert_receive {:event, [:tether, :worker, :start], _, %{worker: replacement}}
      refute replacement == m
    end)

    refute_receive {:event, [:tether, :worker, :exit], _, %{worker: ^m}}, 300
    refute_receive {:event, [:tether, :alert], _, %{worker: ^m}}
  end

  test "a member that stops reports its Python's exit itself; the pool logs it and reports nothing again" do
    pool = start_pool(size: 1)
    [m] = Tether.Pool.status(pool).workers
    os_pid = Tether.Worker.info(m).os_pid
    flush()

    ExUnit.CaptureLog.capture_log(fn ->
      fire(m, "ops_stop")
      GenServer.stop(m)
      assert_receive {:event, [:tether, :worker, :exit], _, %{worker: ^m, os_pid: ^os_pid, reason: :shutdown}}
      cleared("ops_stop", m, os_pid)
      assert_receive {:log_event, %{level: :warning, msg: msg, meta: %{domain: [:tether], tether_worker: ^m, tether_pool: ^pool}}}
      assert text(msg) =~ "member #{:erlang.pid_to_list(m)} went down (normal); starting another"
      assert_receive {:event, [:tether, :worker, :start], _, _}
    end)

    refute_receive {:event, [:tether, :worker, :exit], _, %{worker: ^m}}, 300
    refute_receive {:event, [:tether, :alert], _, %{worker: ^m}}
  end

  test "a Python that dies clears the alerts it left firing, and the worker's log lines name it" do
    {:ok, w} = Tether.Worker.start_link(TestPython.opts())
    on_exit(fn -> TestPython.stop(w) end)
    os_pid = Tether.Worker.info(w).os_pid
    flush()

    ExUnit.CaptureLog.capture_log(fn ->
      fire(w, "ops_crash")
      assert {:error, {:worker_exit, 3}} = Tether.Worker.call(w, @m, "crash", [])
      assert_receive {:event, [:tether, :worker, :exit], _, %{worker: ^w, os_pid: ^os_pid, reason: {:exit_status, 3}}}
      cleared("ops_crash", w, os_pid)
      assert_receive {:log_event, %{level: :warning, msg: msg, meta: %{domain: [:tether], tether_worker: ^w, os_pid: ^os_pid} = meta}}
      assert text(msg) =~ "(os pid #{os_pid}) exited with status 3"
      refute Map.has_key?(meta, :tether_pool)
      assert_receive {:event, [:tether, :worker, :start], _, %{worker: ^w}}
    end)

    # The new Python has no alert of the old one's to clear.
    TestPython.stop(w)
    assert_receive {:event, [:tether, :worker, :exit], _, %{worker: ^w, reason: :shutdown}}
    refute_receive {:event, [:tether, :alert], _, %{worker: ^w}}, 300
  end

  test "a worker that goes down with its parent reports why, not an orderly stop" do
    test = self()

    ExUnit.CaptureLog.capture_log(fn ->
      parent = spawn(fn ->
        {:ok, w} = Tether.Worker.start_link(TestPython.opts())
        send(test, {:worker, w})
        receive do: (:never -> :ok)
      end)

      assert_receive {:worker, w}, 30_000
      ref = Process.monitor(w)
      Process.exit(parent, :boom)
      assert_receive {:DOWN, ^ref, :process, ^w, :boom}, 5_000
      assert_receive {:event, [:tether, :worker, :exit], _, %{worker: ^w, reason: {:worker_down, :boom}}}
    end)
  end

  test "a member whose Python cannot start again reports its tries in the log, not as exits" do
    dir = TestPython.tmp_dir!()
    flag = Path.join(dir, "imported")

    # Imports once; every later import fails, until the flag goes.
    File.write!(Path.join(dir, "ops_fragile.py"), """
    import os
    if os.path.exists(#{inspect(flag)}):
        raise RuntimeError("the model file is missing")
    open(#{inspect(flag)}, "w").close()
    def pid():
        return os.getpid()
    """)

    pool = start_pool(size: 1, modules: ["ops_fragile"], env: [{"PYTHONPATH", TestPython.pythonpath([dir])}])
    [m] = Tether.Pool.status(pool).workers
    os_pid = Tether.Worker.info(m).os_pid
    flush()

    ExUnit.CaptureLog.capture_log(fn ->
      System.cmd("kill", ["-9", "#{os_pid}"])
      assert_receive {:event, [:tether, :worker, :exit], _, %{worker: ^m, os_pid: ^os_pid, reason: {:exit_status, 137}}}
      assert_receive {:log_event, %{level: :warning, msg: msg, meta: %{domain: [:tether], tether_worker: ^m, os_pid: ^os_pid, tether_pool: ^pool}}}
      assert text(msg) =~ "(os pid #{os_pid}) exited on signal 9"

      # Three tries at least (at once, then after 100 and 200 ms), each logged by the pool.
      for _ <- 1..3 do
        assert_receive {:log_event, %{level: :error, msg: msg, meta: %{tether_pool: ^pool}}}, 5_000
        assert text(msg) =~ "could not start a worker (retrying)"
      end

      File.rm!(flag)
      wait_until(fn -> Tether.Pool.status(pool).idle == 1 end)
    end)

    assert_receive {:event, [:tether, :worker, :start], _, %{worker: started}}
    refute started == m
    {:messages, messages} = Process.info(self(), :messages)
    assert [] == for({:event, [:tether, :worker, :exit], _, md} <- messages, do: md)
  end
end
