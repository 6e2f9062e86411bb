defmodule Tether.PoolTest do
  # Against real `python -m tether.worker` processes (make test sets TETHER_PYTHON).
  use ExUnit.Case, async: false
  import Tether.TestWait
  alias Tether.TestPython

  doctest Tether.Pool

  @m "beam_handlers"

  defp start_pool(extra) do
    {:ok, pool} = Tether.Pool.start_link(TestPython.opts(extra))
    on_exit(fn -> TestPython.stop(pool) end)
    pool
  end

  defp ms(fun) do
    {us, result} = :timer.tc(fun)
    {div(us, 1000), result}
  end

  test "starts under a supervisor by name, members ready" do
    spec = {Tether.Pool, TestPython.opts(name: :tether_test_pool, size: 2)}
    {:ok, sup} = Supervisor.start_link([spec], strategy: :one_for_one)
    on_exit(fn -> TestPython.stop(sup) end)
    assert %{size: 2, idle: 2, busy: 0, starting: 0, queued: 0, workers: [_, _]} = Tether.Pool.status(:tether_test_pool)
    assert {:ok, 3} = Tether.Pool.call(:tether_test_pool, @m, "add", [1, 2])
    assert 7 == Tether.Pool.call!(:tether_test_pool, @m, "add", [3, 4])
  end

  test "a member that cannot start fails start_link with its reason" do
    assert {:error, {:import_error, "tether_no_such_module", _type, _msg, tb}} =
             Tether.Pool.start_link(TestPython.opts(modules: ["tether_no_such_module"], size: 2))

    assert tb =~ "Traceback"
    assert_raise ArgumentError, ~r/:size: expected a positive integer/, fn -> Tether.Pool.start_link(TestPython.opts(size: 0)) end
  end

  test "a worker's function given a pool, or a pool's given a worker, raises and crashes neither" do
    pool = start_pool(size: 1)
    {:ok, w} = Tether.Worker.start(TestPython.opts([]))
    on_exit(fn -> TestPython.stop(w) end)

    for misuse <- [
          fn -> Tether.Worker.call(pool, @m, "add", [1, 2]) end,
          fn -> Tether.Worker.info(pool) end,
          fn -> Tether.Worker.stats(pool) end
        ] do
      assert_raise ArgumentError, ~r/this is a tether pool: use Tether.Pool.call/, misuse
    end

    for misuse <- [
          fn -> Tether.Pool.call(w, @m, "add", [1, 2]) end,
          fn -> Tether.Pool.status(w) end,
          fn -> Tether.Pool.transaction(w, fn _ -> :ran end) end
        ] do
      assert_raise ArgumentError, ~r/this is a tether worker: use Tether.Worker.call/, misuse
    end

    assert {:ok, 3} = Tether.Pool.call(pool, @m, "add", [1, 2])
    assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
  end

  test "start/1 returns a member's start error without a link" do
    assert {:error, {:import_error, "tether_no_such_module", _, _, _}} =
             Tether.Pool.start(TestPython.opts(modules: ["tether_no_such_module"], size: 1))
  end

  test "a start failure is logged once, by the pool, and not when start_link returns it" do
    # Each member used to log its own failure, traceback and all, beside the error start_link returned.
    log =
      ExUnit.CaptureLog.capture_log(fn ->
        assert {:error, {:import_error, _, _, _, _}} =
                 Tether.Pool.start(TestPython.opts(modules: ["tether_no_such_module"], size: 2))
      end)

    refute log =~ "could not start"

    flag = Path.join(TestPython.tmp_dir!(), "fail-import")
    env = [{"PYTHONPATH", TestPython.pythonpath()}, {"TETHER_TEST_FAIL_IMPORT", flag}]
    pool = start_pool(size: 1, modules: [@m, "flaky_import"], env: env)
    File.write!(flag, "")
    on_exit(fn -> File.rm(flag) end)

    log =
      ExUnit.CaptureLog.capture_log(fn ->
        assert {:error, {:worker_exit, 3}} = Tether.Pool.call(pool, @m, "crash", [])
        # A call made while the replacement starts waits for it, and hears why it failed, not :timeout
        # at its deadline (a waiter from before the failure, and calls made after it).
        {us, result} = :timer.tc(fn -> Tether.Pool.call(pool, @m, "add", [1, 2], timeout: 20_000) end)
        assert {:error, {:no_worker, {:import_error, "flaky_import", "ImportError", _, _}} = reason} = result
        assert us < 15_000_000
        assert Exception.message(%Tether.Error{reason: reason}) =~
                 ~r/^no pool member is running, and the last could not start: importing flaky_import raised ImportError: .*told to fail/

        for opts <- [[timeout: 5000], [timeout: 5000, checkout_timeout: 4000]] do
          {us, result} = :timer.tc(fn -> Tether.Pool.call(pool, @m, "add", [1, 2], opts) end)
          assert {{:error, {:no_worker, {:import_error, _, _, _, _}}}, true} = {result, us < 1_000_000}
        end

        # The crashed member's replacement fails its import, and is retried after 100, 200, ... ms.
        Process.sleep(1500)
        # Between tries it is down: counted, so that the states add up to the size.
        wait_until(fn -> match?(%{down: 1, size: 1, idle: 0, busy: 0}, Tether.Pool.status(pool)) end)
      end)

    assert log =~ "could not start a worker (retrying)" and log =~ "told to fail"
    refute log =~ "Python could not start"
    File.rm!(flag)
    wait_until(fn -> Tether.Pool.status(pool).idle == 1 end, 600)
    assert {:ok, 3} = Tether.Pool.call(pool, @m, "add", [1, 2])
  end

  # The bar is #11's. On a shared 2-core box one attempt can lose 200 ms to a stall that
  # is not the pool's (four Pythons waking at once, another process on both cores), so
  # the best of up to 3 attempts is held to it: a pool that serialises calls (2 s) or
  # runs two at a time (1 s) fails all three.
  test "four concurrent 0.5 s calls on a pool of 4 take at most 0.7 s" do
    pool = start_pool(size: 4)

    attempt = fn ->
      {t, results} = ms(fn ->
        1..4 |> Enum.map(fn _ -> Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [0.5]) end) end) |> Task.await_many()
      end)

      assert results == List.duplicate({:ok, 0.5}, 4)
      t
    end

    times = Enum.reduce_while(1..3, [], fn _, acc -> t = attempt.(); if t <= 700, do: {:halt, [t | acc]}, else: {:cont, [t | acc]} end)
    assert Enum.min(times) <= 700, "took #{inspect(Enum.reverse(times))} ms"
  end

  test "a full queue answers :overloaded at once, and says so through telemetry" do
    test = self()
    :ok = :telemetry.attach(:tether_pool_overload, [:tether, :pool, :overloaded], fn e, m, md, _ -> send(test, {:event, e, m, md}) end, nil)
    on_exit(fn -> :telemetry.detach(:tether_pool_overload) end)

    pool = start_pool(size: 1, max_queue: 1, name: :tether_overload_pool)
    holder = Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [0.6]) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 1 end)
    queued = Task.async(fn -> Tether.Pool.call(pool, @m, "add", [1, 2]) end)
    wait_until(fn -> Tether.Pool.status(pool).queued == 1 end)

    # "At once": the fastest of 3 refusals (the queue stays full while the holder sleeps),
    # so one preemption of this box is not read as the pool waiting.
    refusals = for _ <- 1..3, do: ms(fn -> Tether.Pool.call(pool, @m, "add", [1, 2]) end)
    assert Enum.all?(refusals, fn {_, result} -> result == {:error, :overloaded} end), inspect(refusals)
    assert refusals |> Enum.map(&elem(&1, 0)) |> Enum.min() < 100, inspect(refusals)
    assert_receive {:event, [:tether, :pool, :overloaded], %{queue_length: 1}, %{pool: :tether_overload_pool, max_queue: 1}}
    assert_raise Tether.Error, ~r/queue is full/, fn -> Tether.Pool.call!(pool, @m, "add", [1, 2]) end

    assert {:ok, 0.6} = Task.await(holder)
    assert {:ok, 3} = Task.await(queued)
  end

  test "waiting counts against the timeout; checkout_timeout bounds the wait alone" do
    pool = start_pool(size: 1)
    holder = Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [0.8]) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 1 end)
    {t, result} = ms(fn -> Tether.Pool.call(pool, @m, "add", [1, 2], 200) end)
    # Answered at the deadline, not when the member frees up (~780 ms from here): the
    # upper bound leaves a busy box 400 ms and still tells the two apart.
    assert result == {:error, :timeout} and t >= 190 and t < 600, "took #{t} ms"
    assert {:error, :checkout_timeout} = Tether.Pool.call(pool, @m, "add", [1, 2], timeout: 5000, checkout_timeout: 50)
    assert {:ok, 0.8} = Task.await(holder)
    # The member counts the call out just after its reply is sent: idle a moment after the caller has it.
    wait_until(fn -> match?(%{queued: 0, idle: 1}, Tether.Pool.status(pool)) end)
  end

  test "crashed members are replaced and the pool keeps serving" do
    pool = start_pool(size: 2)
    %{workers: [a, b]} = Tether.Pool.status(pool)

    # the BEAM side of a member dies: the pool starts another
    Process.exit(a, :kill)
    wait_until(fn -> %{workers: ws, idle: idle} = Tether.Pool.status(pool); a not in ws and length(ws) == 2 and idle == 2 end)
    assert b in Tether.Pool.status(pool).workers

    # the Python side dies: the caller hears it, the member restarts Python
    results = for _ <- 1..2, do: Tether.Pool.call(pool, @m, "crash", [])
    assert results == [{:error, {:worker_exit, 3}}, {:error, {:worker_exit, 3}}]
    results = 1..6 |> Enum.map(fn i -> Task.async(fn -> Tether.Pool.call(pool, @m, "add", [i, 1], 30_000) end) end) |> Task.await_many(30_000)
    assert results == for(i <- 1..6, do: {:ok, i + 1})
  end

  test "the defaults count the CPUs, not the schedulers: under +S 1 a pool still gets a member per CPU" do
    cpus = :tether_options.cpus()
    assert cpus == :erlang.system_info(:logical_processors_available) or
             :erlang.system_info(:logical_processors_available) == :unknown

    online = System.schedulers_online()
    :erlang.system_flag(:schedulers_online, 1)
    on_exit(fn -> :erlang.system_flag(:schedulers_online, online) end)
    pool = start_pool([])
    assert %{size: ^cpus, spinning: spinning} = Tether.Pool.status(pool)
    assert spinning == max(1, cpus - 1)
  end

  test "only :spinners members poll for their next call, a lone caller meets one, and a replacement takes over" do
    pool = start_pool(size: 3, spinners: 1)
    assert %{spinning: 1, workers: workers} = Tether.Pool.status(pool)
    spin_us = fn w -> {:ok, %{"worker" => %{"spin" => %{"us" => us}}}} = Tether.Worker.stats(w); us end
    assert workers |> Enum.map(spin_us) |> Enum.count(&(&1 > 0)) == 1
    [spinner] = Enum.filter(workers, &(spin_us.(&1) > 0))
    os_pid = Tether.Worker.info(spinner).os_pid
    # calls one after another: the polling member is idle each time, and is handed out first
    assert for(_ <- 1..6, do: Tether.Pool.call(pool, @m, "os_pid", [])) == List.duplicate({:ok, os_pid}, 6)

    Process.exit(spinner, :kill)
    wait_until(fn -> %{workers: ws, idle: idle} = Tether.Pool.status(pool); spinner not in ws and idle == 3 end)
    %{spinning: 1, workers: workers} = Tether.Pool.status(pool)
    assert workers |> Enum.map(spin_us) |> Enum.count(&(&1 > 0)) == 1

    for opts <- [[spinners: 0], [spin_us: 0]] do
      none = start_pool([size: 2] ++ opts)
      assert %{spinning: 0, workers: both} = Tether.Pool.status(none)
      assert Enum.map(both, spin_us) == [0, 0]
    end
    assert_raise ArgumentError, ~r/:spinners: expected a non-negative integer/, fn ->
      Tether.Pool.start_link(TestPython.opts(spinners: -1))
    end
  end

  test "calls wait in a busy member's own queue, and a caller that dies there is counted off" do
    pool = start_pool(size: 2)
    busy = for _ <- 1..2, do: Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [0.4]) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 2 end)
    # Routed straight to a member, not held by the pool: the member's queue holds them.
    queued = Task.async(fn -> Tether.Pool.call(pool, @m, "add", [1, 2]) end)
    {doomed, ref} = spawn_monitor(fn -> Tether.Pool.call(pool, @m, "add", [3, 4]) end)
    wait_until(fn -> Tether.Pool.status(pool).queued == 2 end)
    Process.exit(doomed, :kill)
    assert_receive {:DOWN, ^ref, :process, ^doomed, :killed}
    wait_until(fn -> Tether.Pool.status(pool).queued == 1 end)
    assert Task.await(queued) == {:ok, 3}
    assert Enum.map(busy, &Task.await/1) == [{:ok, 0.4}, {:ok, 0.4}]
    # Every call counted in was counted out: both members idle, none queued.
    wait_until(fn -> match?(%{idle: 2, busy: 0, queued: 0}, Tether.Pool.status(pool)) end)
  end

  test "a call queued behind a long call runs on the member that frees up first" do
    pool = start_pool(size: 2)
    long = Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [2.0]) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 1 end)
    short = Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [0.2]) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 2 end)
    # Both busy, equally loaded: it queues at one of them, the long one first among equals.
    {t, result} = ms(fn -> Tether.Pool.call(pool, @m, "add", [1, 2], 5000) end)
    assert result == {:ok, 3}
    # About 200 ms when the freed member asks for it back; 2 s behind the long call otherwise.
    assert t < 1000, "took #{t} ms"
    assert Task.await(short) == {:ok, 0.2}
    assert Task.await(long, 5000) == {:ok, 2.0}
    wait_until(fn -> match?(%{idle: 2, busy: 0, queued: 0}, Tether.Pool.status(pool)) end)
  end

  test "a member checked back in takes the call queued behind a long one on its peer" do
    pool = start_pool(size: 2)
    me = self()
    holder = Task.async(fn ->
      Tether.Pool.transaction(pool, fn w -> send(me, {:held, w}); receive do :go -> :ok end end, 5000)
    end)
    assert_receive {:held, _}, 5000
    long = Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [2.0], 5000) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 2 end)
    quick = Task.async(fn -> ms(fn -> Tether.Pool.call(pool, @m, "add", [1, 2], 5000) end) end)
    wait_until(fn -> Tether.Pool.status(pool).queued == 1 end)
    send(holder.pid, :go)
    Task.await(holder)
    # Back on the route, it is told to look for work, and asks for the queued call (2 s behind the long one).
    {t, result} = Task.await(quick, 6000)
    assert result == {:ok, 3}
    assert t < 1000, "took #{t} ms"
    assert Task.await(long, 6000) == {:ok, 2.0}
  end

  test "checkout_timeout checks a member out whatever its length: the call waits in the pool, not a member's queue" do
    pool = start_pool(size: 1)
    holder = Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [0.5]) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 1 end)
    [member] = Tether.Pool.status(pool).workers
    waiter = Task.async(fn -> Tether.Pool.call(pool, @m, "add", [1, 2], timeout: 3000, checkout_timeout: 5000) end)
    wait_until(fn -> Tether.Pool.status(pool).queued == 1 end)
    assert Tether.Worker.info(member).queued == 0
    assert Task.await(waiter) == {:ok, 3}
    assert Task.await(holder) == {:ok, 0.5}
  end

  test "calls queued at a member whose Python died run on its peer, not after the restart" do
    slow = Path.join(TestPython.tmp_dir!(), "slow-import")
    env = [{"PYTHONPATH", TestPython.pythonpath()}, {"TETHER_TEST_SLOW_IMPORT", slow}]
    pool = start_pool(size: 2, modules: [@m, "flaky_import"], env: env)
    File.write!(slow, "3")
    on_exit(fn -> File.rm(slow) end)
    crash = Task.async(fn -> Tether.Pool.call(pool, @m, "crash_after", [0.3], 10_000) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 1 end)
    long = Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [0.8], 10_000) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 2 end)
    # Equally loaded members: one each, so one waits behind the call that crashes.
    quick = for i <- 1..2, do: Task.async(fn -> ms(fn -> Tether.Pool.call(pool, @m, "add", [i, 1], 10_000) end) end)
    wait_until(fn -> Tether.Pool.status(pool).queued == 2 end)
    assert Task.await(crash) == {:error, {:worker_exit, 3}}
    # The restart imports for 3 s; the peer is free after 0.8 s.
    for {{t, result}, i} <- Enum.zip(Task.await_many(quick, 10_000), 1..2) do
      assert result == {:ok, i + 1}
      assert t < 2000, "took #{t} ms"
    end
    assert Task.await(long) == {:ok, 0.8}
  end

  test "calls routed to a member whose call timed out run elsewhere, not after its cancel" do
    pool = start_pool(size: 2)
    # Python blocks the cancel signal: the member waits cancel_grace (1 s) and restarts it.
    assert {:error, :timeout} = Tether.Pool.call(pool, @m, "sleep_ignoring_cancel", [3.0], 200)
    times =
      for i <- 1..4 do
        Task.async(fn -> ms(fn -> Tether.Pool.call(pool, @m, "add", [i, 1], 5000) end) end)
      end
      |> Enum.map(&Task.await(&1, 6000))
    assert Enum.map(times, &elem(&1, 1)) == [{:ok, 2}, {:ok, 3}, {:ok, 4}, {:ok, 5}]
    slowest = times |> Enum.map(&elem(&1, 0)) |> Enum.max()
    assert slowest < 700, "took #{inspect(Enum.map(times, &elem(&1, 0)))} ms"
  end

  test "a checkout is not starved by routed calls: a member drains for it, and takes none while held" do
    pool = start_pool(size: 1)
    stop = :atomics.new(1, [])
    looping = for _ <- 1..4 do
      Task.async(fn ->
        Stream.repeatedly(fn -> Tether.Pool.call(pool, @m, "sleep", [0.01], 10_000) end)
        |> Enum.take_while(fn r -> r == {:ok, 0.01} and :atomics.get(stop, 1) == 0 end)
        |> length()
      end)
    end

    {route, _, _, _} = :tether_routes.lookup(pool)
    {_member, load} = elem(route, 0)
    wait_until(fn -> Tether.Pool.status(pool).queued >= 2 end)
    {t, {os_pid, during, count}} = ms(fn ->
      Tether.Pool.transaction(pool, fn w ->
        # While held, routed calls wait for the pool: the member's queue stays empty, and a
        # caller that read the route just before would find the count marked held.
        Process.sleep(100)
        {Tether.Worker.call(w, @m, "os_pid", []), Tether.Worker.info(w).queued, :atomics.get(load, 1)}
      end, 5_000)
    end)

    :atomics.put(stop, 1, 1)
    assert {:ok, _} = os_pid
    assert during == 0
    assert :tether_pool.held(count)
    # The queue it drained held at most 3 calls of 10 ms, then the hold's 100 ms.
    assert t < 1_000, "took #{t} ms"
    assert Enum.all?(Task.await_many(looping, 10_000), &(&1 > 0))
  end

  test "pin: the polling member gets a CPU of its own and the sleeping ones the rest; pin: false and a pool of 1 stay free" do
    # The CPUs a worker's Python may run on.
    cpus = fn w -> cpus_allowed(Tether.Worker.info(w).os_pid) end

    spin_us = fn w -> {:ok, %{"worker" => %{"spin" => %{"us" => us}}}} = Tether.Worker.stats(w); us end
    everything = cpus.(elem(Tether.Worker.start(TestPython.opts([])), 1) |> tap(&on_exit(fn -> TestPython.stop(&1) end)))

    pool = start_pool(size: 2, spinners: 1)
    %{workers: workers} = Tether.Pool.status(pool)
    {[spinner], [sleeper]} = Enum.split_with(workers, &(spin_us.(&1) > 0))

    if MapSet.size(everything) >= 2 do
      assert MapSet.size(cpus.(spinner)) == 1, "the polling member keeps to one CPU"
      assert MapSet.disjoint?(cpus.(spinner), cpus.(sleeper))
      assert MapSet.union(cpus.(spinner), cpus.(sleeper)) == everything

      # The sleeping member serves under SCHED_BATCH, or under the normal policy once it
      # measured that its CPU had no room; what it reports is what the kernel applies (the
      # policy may change between its stats reply and the look at /proc: looked at again).
      {policy, kernel} =
        Enum.reduce_while(1..3, nil, fn _, _ ->
          {:ok, %{"worker" => %{"sched" => sched}}} = Tether.Worker.stats(sleeper)
          assert %{"policy" => policy, "unavailable" => nil} = sched
          kernel = sched_policy(Tether.Worker.info(sleeper).os_pid)
          if kernel == String.to_atom(policy), do: {:halt, {policy, kernel}}, else: {:cont, {policy, kernel}}
        end)

      assert policy in ["batch", "normal"] and kernel == String.to_atom(policy)
      assert {:ok, %{"worker" => %{"sched" => nil}}} = Tether.Worker.stats(spinner)
      assert sched_policy(Tether.Worker.info(spinner).os_pid) == :normal

      # sched_batch: false keeps the pinning and the normal policy.
      %{workers: plain} = Tether.Pool.status(start_pool(size: 2, spinners: 1, sched_batch: false))
      assert Enum.map(plain, &sched_policy(Tether.Worker.info(&1).os_pid)) == [:normal, :normal]
      assert Enum.all?(plain, fn w -> {:ok, %{"worker" => %{"sched" => nil}}} = Tether.Worker.stats(w) end)
      assert plain |> Enum.map(cpus) |> Enum.uniq() |> length() == 2
    end

    # Not asked; no sleeper to keep apart; no member polls at all.
    for opts <- [[size: 2, pin: false], [size: 1], [size: 2, spinners: 1, spin_us: 0]] do
      %{workers: free} = Tether.Pool.status(start_pool(opts))
      assert Enum.map(free, cpus) == List.duplicate(everything, length(free))
    end

    assert_raise ArgumentError, ~r/:pin: expected true or false/, fn -> Tether.Pool.start_link(TestPython.opts(pin: :yes)) end
    assert_raise ArgumentError, ~r/:sched_batch: expected true or false/, fn ->
      Tether.Pool.start_link(TestPython.opts(sched_batch: 1))
    end
  end

  test "schedulers bound to CPUs (+sbt db): the polling member keeps off scheduler 1's CPU" do
    # A node of its own, since bindings are an emulator flag; it reaches this one over standard I/O.
    ebin = Path.dirname(:code.which(:tether_pool)) |> String.to_charlist()
    {:ok, peer, _node} = :peer.start_link(%{connection: :standard_io, args: [~c"+sbt", ~c"db", ~c"-pa", ebin]})
    on_exit(fn -> catch_exit(:peer.stop(peer)) end)
    bindings = :peer.call(peer, :erlang, :system_info, [:scheduler_bindings])

    if is_integer(elem(bindings, 0)) and tuple_size(bindings) >= 2 do
      opts = Map.new(TestPython.opts(size: 2, spinners: 1))
      {:ok, pool} = :peer.call(peer, :tether_pool, :start, [opts], 30_000)
      %{workers: workers} = :peer.call(peer, :tether_pool, :status, [pool])
      allowed = fn w -> cpus_allowed(:peer.call(peer, :tether_worker, :info, [w]).os_pid) end
      spins = fn w ->
        {:ok, %{"worker" => %{"spin" => %{"us" => us}}}} = :peer.call(peer, :tether_worker, :stats, [w])
        us > 0
      end
      {[spinner], [sleeper]} = Enum.split_with(workers, spins)
      # Before, it took the first CPU, scheduler 1's: 26.7-27.2 us a call against 14.5-16.0.
      assert allowed.(spinner) == MapSet.new([elem(bindings, tuple_size(bindings) - 1)])
      assert elem(bindings, 0) in allowed.(sleeper)
      :ok = :peer.call(peer, :tether_pool, :stop, [pool], 30_000)
    end
  end

  # The scheduling policy of a process: field 41 of /proc/<pid>/stat (0 SCHED_OTHER, 3 SCHED_BATCH).
  defp sched_policy(os_pid) do
    stat = File.read!("/proc/#{os_pid}/stat")
    # The name in parentheses may hold ") ": the fields start after the last one.
    after_name = stat |> String.split(") ") |> List.last()
    case after_name |> String.split(" ") |> Enum.at(38) do
      "0" -> :normal
      "3" -> :batch
      other -> other
    end
  end

  # The CPUs a process may run on, from the kernel ("0-2,5" -> MapSet of 0, 1, 2, 5).
  defp cpus_allowed(os_pid) do
    [list] = Regex.run(~r/Cpus_allowed_list:\s*(\S+)/, File.read!("/proc/#{os_pid}/status"), capture: :all_but_first)

    list
    |> String.split(",")
    |> Enum.flat_map(fn part ->
      case part |> String.split("-") |> Enum.map(&String.to_integer/1) do
        [a, b] -> Enum.to_list(a..b)
        [a] -> [a]
      end
    end)
    |> MapSet.new()
  end

  test "a count left by a caller that died before its call arrived is reset, and a checkout gets the member" do
    pool = start_pool(size: 1)
    {route, _max_queue, _meta, _peers} = :tether_routes.lookup(pool)
    {_worker, load} = elem(route, 0)
    # What a caller killed between counting its call in and sending it leaves behind.
    :atomics.add(load, 1, 1)
    assert %{busy: 1, idle: 0} = Tether.Pool.status(pool)
    {t, result} = ms(fn -> Tether.Pool.transaction(pool, fn w -> Tether.Worker.call(w, @m, "add", [1, 2]) end, 5_000) end)
    assert result == {:ok, 3}
    assert t < 3_000, "took #{t} ms"
    # Checked in (a cast): the hold lifted, and the phantom count gone.
    wait_until(fn -> :atomics.get(load, 1) == 0 end)
    wait_until(fn -> match?(%{busy: 0, idle: 1}, Tether.Pool.status(pool)) end)
  end

  test "a call that finds every member checked out waits for one, then leaves it on the route" do
    pool = start_pool(size: 1)
    test = self()
    holder = Task.async(fn -> Tether.Pool.transaction(pool, fn _w -> send(test, :holding); Process.sleep(300); :held end) end)
    assert_receive :holding
    {t, result} = ms(fn -> Tether.Pool.call(pool, @m, "add", [1, 2]) end)
    assert result == {:ok, 3} and t >= 200, "took #{t} ms"
    assert Task.await(holder) == :held
    # The member went back on the route, not to the waiting call alone: calls go straight to it again.
    assert %{idle: 1, queued: 0} = Tether.Pool.status(pool)
    calls = for _ <- 1..4, do: Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [0.2]) end)
    wait_until(fn -> Tether.Pool.status(pool).queued == 3 end)
    [pid] = Tether.Pool.status(pool).workers
    assert Tether.Worker.info(pid).queued == 3
    assert Enum.map(calls, &Task.await/1) == List.duplicate({:ok, 0.2}, 4)
  end

  test "the node's route table: a stopped pool's row goes at once, a killed pool's once the keeper sees it" do
    {:ok, stopped} = Tether.Pool.start(TestPython.opts(size: 1))
    assert {{_member}, _max_queue, _meta, _peers} = :tether_routes.lookup(stopped)
    :ok = Tether.Pool.stop(stopped)
    assert :tether_routes.lookup(stopped) == :undefined

    {:ok, killed} = Tether.Pool.start(TestPython.opts(size: 1))
    [member] = Tether.Pool.status(killed).workers
    mref = Process.monitor(member)
    Process.exit(killed, :kill)
    assert_receive {:DOWN, ^mref, :process, ^member, _}, 5_000
    wait_until(fn -> :tether_routes.lookup(killed) == :undefined end)
    # Nothing per pool is left anywhere else either.
    assert for({{:tether_pool, _}, _} = kv <- :persistent_term.get(), do: kv) == []
  end

  test "pools outlive the route keeper: a new one starts and each pool publishes again" do
    pool = start_pool(size: 1)
    keeper = Process.whereis(:tether_pool_routes_keeper)
    # Not in the group of the application that started the first pool, whose stop would kill it.
    assert Process.info(keeper, :group_leader) == {:group_leader, Process.whereis(:user)}
    kref = Process.monitor(keeper)
    Process.exit(keeper, :kill)
    assert_receive {:DOWN, ^kref, :process, ^keeper, :killed}
    wait_until(fn -> match?({{_}, _, _, _}, :tether_routes.lookup(pool)) end)
    assert Process.whereis(:tether_pool_routes_keeper) not in [nil, keeper]
    assert {:ok, 3} = Tether.Pool.call(pool, @m, "add", [1, 2])
    # The new keeper watches the pool: its row goes when it does.
    :ok = Tether.Pool.stop(pool)
    assert :tether_routes.lookup(pool) == :undefined
  end

  test ":sys.get_status shows a pool's shape, not its members' environment" do
    pool = start_pool(size: 2, env: [{"PYTHONPATH", TestPython.pythonpath()}, {"TETHER_TEST_SECRET", "hunter2"}])
    status = inspect(:sys.get_status(pool), limit: :infinity, printable_limit: :infinity)
    assert status =~ "size: 2" and status =~ "members: 2"
    refute status =~ "hunter2"
  end

  test "a caller that dies holding a member gives it back" do
    pool = start_pool(size: 1)
    {pid, ref} = spawn_monitor(fn -> Tether.Pool.transaction(pool, fn _w -> Process.sleep(:infinity) end) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 1 end)
    Process.exit(pid, :kill)
    assert_receive {:DOWN, ^ref, :process, ^pid, :killed}
    assert {:ok, 3} = Tether.Pool.call(pool, @m, "add", [1, 2], 1000)
  end

  test "a caller that waited for a member, then dies holding it, gives it back; a dead waiter gets none" do
    pool = start_pool(size: 1)
    test = self()
    hold = fn -> Tether.Pool.transaction(pool, fn _w -> send(test, {:holding, self()}); Process.sleep(:infinity) end) end
    {first, first_ref} = spawn_monitor(hold)
    assert_receive {:holding, ^first}
    # queued behind the first: one that dies while waiting, one that gets the member
    {gone, gone_ref} = spawn_monitor(hold)
    wait_until(fn -> Tether.Pool.status(pool).queued == 1 end)
    Process.exit(gone, :kill)
    assert_receive {:DOWN, ^gone_ref, :process, ^gone, :killed}
    wait_until(fn -> Tether.Pool.status(pool).queued == 0 end)  # the dead waiter leaves the queue
    {second, second_ref} = spawn_monitor(hold)
    wait_until(fn -> Tether.Pool.status(pool).queued == 1 end)
    Process.exit(first, :kill)
    assert_receive {:DOWN, ^first_ref, :process, ^first, :killed}
    assert_receive {:holding, ^second}
    assert %{busy: 1, queued: 0} = Tether.Pool.status(pool)
    Process.exit(second, :kill)
    assert_receive {:DOWN, ^second_ref, :process, ^second, :killed}
    wait_until(fn -> match?(%{busy: 0, idle: 1, queued: 0}, Tether.Pool.status(pool)) end)
    assert {:ok, 3} = Tether.Pool.call(pool, @m, "add", [1, 2], 1000)
  end

  test "a timed-out call is cancelled; the next call goes through at once" do
    pool = start_pool(size: 1)
    assert {:error, :timeout} = Tether.Pool.call(pool, @m, "sleep", [5], 200)
    {t, result} = ms(fn -> Tether.Pool.call(pool, @m, "add", [1, 2]) end)
    assert result == {:ok, 3}
    assert t < 300, "took #{t} ms"
  end

  test "telemetry spans cover pooled calls, waiting included" do
    test = self()
    :ok = :telemetry.attach(:tether_pool_span, [:tether, :call, :stop], fn e, m, md, _ -> send(test, {:event, e, m, md}) end, nil)
    on_exit(fn -> :telemetry.detach(:tether_pool_span) end)
    pool = start_pool(size: 1)
    holder = Task.async(fn -> Tether.Pool.call(pool, @m, "sleep", [0.3]) end)
    wait_until(fn -> Tether.Pool.status(pool).busy == 1 end)
    assert {:ok, 3} = Tether.Pool.call(pool, @m, "add", [1, 2])
    Task.await(holder)
    assert_receive {:event, _, %{queue_time: q}, %{function: "add", pool: ^pool, route: :inline}}
    assert System.convert_time_unit(q, :native, :millisecond) >= 100
  end

  test "telemetry names the member that ran a pooled call, answered or timed out" do
    test = self()
    events = [[:tether, :call, :stop], [:tether, :call, :exception]]
    :ok = :telemetry.attach_many(:tether_pool_member, events, fn e, m, md, _ -> send(test, {:event, e, m, md}) end, nil)
    on_exit(fn -> :telemetry.detach(:tether_pool_member) end)
    pool = start_pool(size: 2)
    members = Tether.Pool.status(pool).workers
    assert {:ok, 3} = Tether.Pool.call(pool, @m, "add", [1, 2])
    assert_receive {:event, [:tether, :call, :stop], _, %{pool: ^pool, worker: w, result: :ok}}
    assert w in members
    assert {:error, :timeout} = Tether.Pool.call(pool, @m, "sleep", [0.5], timeout: 100)
    assert_receive {:event, [:tether, :call, :exception], _, %{pool: ^pool, worker: w, reason: :timeout}}
    assert w in members
  end

  # The bar (>= 1.6x for the 5-key echo) is measured by `tether bench`. Here,
  # on a shared 2-core machine, the two pools run alternately in short slices
  # so both see the same outside load. A call that mostly waits (10 ms) shows
  # the members' parallelism whatever the CPU load (with 2 ms calls a run at
  # a load average of 3.3 read 1.17x: wake-up delays of a millisecond or two
  # weigh on both pools alike and squeeze the ratio); the CPU-bound echo is
  # printed and only checked for the pool path itself costing throughput. Its
  # slices are 1,200 calls: at 320 they read 0.76-1.62x, once below the floor
  # while another job shared the machine.
  test "small-call throughput under 8 callers: a pool of 2 against a pool of 1" do
    one = start_pool(size: 1)
    two = start_pool(size: 2)
    map = %{id: 1, name: "small", price: 9.5, tags: [:a, :b], ok: true}

    run = fn pool, n, fun, args ->
      {us, _} =
        :timer.tc(fn ->
          1..8
          |> Enum.map(fn _ -> Task.async(fn -> for _ <- 1..n, do: {:ok, _} = Tether.Pool.call(pool, @m, fun, args) end) end)
          |> Task.await_many(60_000)
        end)

      us
    end

    ratio = fn n, fun, args ->
      run.(one, 5, fun, args) && run.(two, 5, fun, args)
      {t1, t2} = Enum.reduce(1..6, {0, 0}, fn _, {a, b} -> {a + run.(one, n, fun, args), b + run.(two, n, fun, args)} end)
      t1 / t2
    end

    waiting = ratio.(5, "sleep", [0.01])
    echo = ratio.(150, "echo", [map])
    IO.puts("\n  8 callers, pool of 2 / pool of 1: #{Float.round(waiting, 2)}x for 10 ms calls, #{Float.round(echo, 2)}x for the 5-key echo")
    assert waiting >= 1.5
    assert echo >= 0.8
  end
end
