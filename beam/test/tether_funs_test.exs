defmodule TetherFunsTest do
  use ExUnit.Case, async: true

  # Funs run code: an etf payload holding one is refused wherever it sits.
  @limits %{safe: true, max_uncompressed_size: 1_073_741_824}

  defp decode(term), do: :tether_formats.decode(:etf, %{}, :erlang.term_to_binary(term), @limits)

  test "a fun is found in every place a term can hold one" do
    f = fn x -> x end
    places = [
      f,
      [1, 2, f],
      [1, 2 | f],
      {f, 1, 2},
      {1, 2, f},
      %{f => 1},
      %{"k" => f},
      %{a: %{b: [{:c, [%{d: {f}}]}]}},
      Map.new(1..40, fn i -> {i, if(i == 33, do: [f], else: i)} end),
      &Enum.map/2
    ]

    for term <- places do
      assert {:error, :funs_refused} == decode(term), inspect(term)
    end
  end

  test "terms full of the tag bytes but no fun decode" do
    rows = for i <- 1..2000, do: %{id: i, price: 9.5, tags: [:p, :q], text: "pppqqq", t: {:reply, [1 | 2]}}
    term = {:reply, 1, {:ok, rows}}
    assert {:ok, ^term} = decode(term)
  end
end
