defmodule TetherFrameSpecTest do
  # Frames docs/format.md §1-2 says a reader refuses, forged from valid ones:
  # Python's reader (src/tether/frame/_header.py, _meta.py, _api.py) refuses
  # each, and so must tether:decode/1,2, with an {:error, reason}, never a raise.
  use ExUnit.Case, async: true

  import Bitwise

  defp layout, do: :tether_wire.tables()["header"]

  defp raw_frame, do: "abc" |> Tether.encode(format: :raw) |> IO.iodata_to_binary()

  # A header with one field (named as in the wire table) replaced and its CRC-32 recomputed.
  defp patch(frame, name, value) do
    {_, offset, size} = List.keyfind(layout(), name, 0)
    <<pre::binary-size(offset), _::binary-size(size), post::binary>> = frame
    crc_fixed(<<pre::binary, value::little-size(size)-unit(8), post::binary>>)
  end

  defp crc_fixed(frame) do
    {_, crc_at, _} = List.keyfind(layout(), "header_crc32", 0)
    <<covered::binary-size(crc_at), _::32, rest::binary>> = frame
    <<covered::binary, :erlang.crc32(covered)::32-little, rest::binary>>
  end

  defp align(n), do: n + 63 &&& ~~~63

  # The frame with its metadata map changed by `fun`: metadata length, padding,
  # metadata CRC-32 and header CRC-32 all follow, so only the map is wrong.
  defp with_meta(frame, fun) do
    {:ok, %{meta_len: mlen, payload_offset: off, payload_size: plen}} = :tether_frame.header(frame)
    new = :erlang.term_to_binary(fun.(:erlang.binary_to_term(binary_part(frame, 64, mlen))))
    pad = align(64 + byte_size(new)) - 64 - byte_size(new)
    frame = <<binary_part(frame, 0, 64)::binary, new::binary, 0::size(pad)-unit(8), binary_part(frame, off, plen)::binary>>
    frame |> patch("metadata_length", byte_size(new)) |> patch("metadata_crc32", :erlang.crc32(new))
  end

  test "filter 0 (none) with a non-zero filter_size is refused" do
    for size <- [2, 4, 255] do
      assert {:error, {:unsupported_filter, {0, ^size}}} = Tether.decode(patch(raw_frame(), "filter_size", size))
    end

    assert {:ok, "abc"} = Tether.decode(patch(raw_frame(), "filter_size", 0))
  end

  test "compression 0 (none) with raw_length other than payload_length is refused" do
    for raw <- [0, 2, 4, 1 <<< 40] do
      assert {:error, {:raw_size_mismatch, ^raw, 3}} = Tether.decode(patch(raw_frame(), "raw_length", raw))
    end

    # A gzip frame's raw_length is the inflated size, larger than what is stored.
    gz = "abc" |> String.duplicate(1000) |> Tether.encode(format: :raw, compression: :gzip) |> IO.iodata_to_binary()
    assert {:ok, %{compression: :gzip, raw_size: 3000}} = Tether.inspect(gz)
    assert {:ok, _} = Tether.decode(gz)
  end

  test "an unknown checksum_kind is refused, verified or not" do
    for kind <- [3, 7, 255], verify <- [true, false] do
      frame = patch(raw_frame(), "checksum_kind", kind)
      assert {:error, {:unsupported_checksum, {:unknown, ^kind}, msg}} = Tether.decode(frame, verify: verify)
      assert msg =~ "upgrade"
      # inspect reads the header only, and refuses it too, as Python's does.
      assert {:error, {:unsupported_checksum, {:unknown, ^kind}, _}} = Tether.inspect(frame)
    end

    # none and crc32 still read; xxh3-64 reads unverified, as before.
    assert {:ok, "abc"} = Tether.decode(patch(raw_frame(), "checksum_kind", 0), verify: true)
    assert {:ok, "abc"} = Tether.decode(patch(raw_frame(), "checksum_kind", 1), verify: false)
    assert {:error, {:unverifiable_checksum, :xxh3_64, _}} = Tether.decode(patch(raw_frame(), "checksum_kind", 1))
  end

  test "metadata without a 'format' binary or a 'type' map is refused, for every format" do
    frames = [
      raw: raw_frame(),
      etf: [1, 2] |> Tether.encode() |> IO.iodata_to_binary(),
      ndarray: <<1, 2, 3, 4>> |> Tether.tensor({:u, 8}, {4}) |> IO.iodata_to_binary()
    ]

    for {format, frame} <- frames do
      assert {:ok, _} = Tether.decode(frame)

      for bad <- [&Map.delete(&1, "format"), &Map.put(&1, "format", 4), &Map.put(&1, "format", ["raw"])] do
        assert {:error, {:bad_metadata, "frame metadata has no 'format' binary"}} = Tether.decode(with_meta(frame, bad))
      end

      assert {:error, {:bad_type_info, ^format, "frame metadata has no 'type' map"}} =
               Tether.decode(with_meta(frame, &Map.delete(&1, "type")))

      assert {:error, {:bad_type_info, ^format, _}} = Tether.decode(with_meta(frame, &Map.put(&1, "type", "x")))
      assert {:error, {:bad_metadata, "frame metadata must be an ETF map"}} = Tether.decode(with_meta(frame, fn _ -> [1] end))
    end
  end
end
