defmodule Tether.RoutesTest do
  # The node's route table on its own: no Python needed.
  use ExUnit.Case, async: false
  import Tether.TestWait

  @keeper :tether_pool_routes_keeper

  defp kill_keeper do
    case Process.whereis(@keeper) do
      nil -> :ok
      pid ->
        ref = Process.monitor(pid)
        Process.exit(pid, :kill)
        assert_receive {:DOWN, ^ref, :process, ^pid, _}
    end
  end

  defp publisher(test) do
    spawn(fn ->
      {keeper, _mref} = :tether_routes.watch()
      true = :tether_routes.publish(self(), {:row, self()}, keeper)
      send(test, {:published, self(), keeper})
      receive do: (:stop -> :ok)
    end)
  end

  test "publishers that start together with no keeper share one, and their rows go when they do" do
    kill_keeper()
    test = self()
    pids = for _ <- 1..50, do: publisher(test)
    keepers = for pid <- pids, do: (assert_receive({:published, ^pid, keeper}, 5_000); keeper)
    keeper = Process.whereis(@keeper)
    assert Enum.uniq(keepers) == [keeper]
    # watch/0 returned once the keeper watched each, and every row is in its table.
    {:monitors, watched} = Process.info(keeper, :monitors)
    assert MapSet.subset?(MapSet.new(pids, &{:process, &1}), MapSet.new(watched))
    assert Enum.all?(pids, fn pid -> :tether_routes.lookup(pid) == {:row, pid} end)

    for pid <- pids, do: Process.exit(pid, :kill)
    wait_until(fn -> Enum.all?(pids, &(:tether_routes.lookup(&1) == :undefined)) end)
    assert Process.whereis(@keeper) == keeper
  end

  test "a publisher whose keeper died hears stale once another keeper holds the table" do
    {old, _mref} = :tether_routes.watch()
    kill_keeper()
    assert :tether_routes.publish(self(), :row, old) == false  # no table: the DOWN follows
    {new, _mref} = :tether_routes.watch()
    assert new != old
    # A pool that has not seen the old keeper's DOWN yet watches the new one before its row goes in.
    assert :tether_routes.publish(self(), :row, old) == :stale
    assert :tether_routes.lookup(self()) == :undefined
    assert :tether_routes.publish(self(), :row, new) == true
    :ok = :tether_routes.delete(self())
  end

  test "a code load reaches the running keeper: it moves to the new code at its next message" do
    {keeper, mref} = :tether_routes.watch()
    {:module, :tether_routes} = :code.load_file(:tether_routes)
    {^keeper, mref2} = :tether_routes.watch()  # answered, by the keeper now on the new code
    # No process runs the old code any more (a keeper looping through a local call would).
    assert :code.soft_purge(:tether_routes)
    Process.demonitor(mref)
    Process.demonitor(mref2)
  end

  test "watch/0 gives up on a keeper that does not answer, rather than hang a pool's start" do
    {keeper, mref} = :tether_routes.watch()
    Process.demonitor(mref)
    # Only the suspending process may resume it: so here, not in an on_exit callback.
    :erlang.suspend_process(keeper)

    try do
      assert_raise ErlangError, ~r/did not answer in 5 s/, fn -> :tether_routes.watch() end
    after
      :erlang.resume_process(keeper)
    end

    assert {^keeper, _} = :tether_routes.watch()
  end

  test "the pinning cursor advances by what each pool takes, from any number of processes at once" do
    _ = :tether_routes.watch()
    start = :tether_routes.next_cursor(1) + 1
    tasks = for _ <- 1..20, do: Task.async(fn -> :tether_routes.next_cursor(2) end)
    taken = tasks |> Enum.map(&Task.await/1) |> Enum.sort()
    assert taken == Enum.to_list(start..(start + 38)//2)
  end
end
