defmodule Tether do
  @moduledoc """
  tether frames from Elixir: write what Python reads, read what Python writes.

  A frame is a 64-byte header, ETF metadata and a payload (see `docs/format.md`).
  `encode/2` writes etf frames (any term) or raw frames (a binary); `tensor/3`
  writes an ndarray frame from an Nx-style binary; `decode/1` reads every
  frame kind Python writes except pickle.

      iex> frame = Tether.encode(%{"id" => 1, tags: [:a]})
      iex> Tether.decode(frame)
      {:ok, %{"id" => 1, tags: [:a]}}
  """

  @typedoc "An Nx tensor type: `{:f, 32}`, `{:s, 64}`, `{:u, 8}`, `{:c, 64}`, `{:bf, 16}`, ..."
  @type nx_type :: {:f | :s | :u | :c | :bf, pos_integer()}

  @doc """
  Encode a term as a frame.

  Options: `format: :etf | :raw`, `compressed: boolean`, `checksum: :crc32 | :none`,
  `metadata: map`.

      iex> Tether.encode(<<1, 2, 3>>, format: :raw) |> Tether.decode()
      {:ok, <<1, 2, 3>>}
  """
  @spec encode(term(), keyword() | map()) :: iodata()
  def encode(term, opts \\ []), do: :tether.encode(term, Map.new(opts))

  @doc """
  Decode a frame: `{:ok, term}` or `{:error, reason}`.

  ndarray frames decode to `%{type: {:f, 32}, shape: {2, 3}, data: binary}`
  where `data` is a sub-binary of the frame; Arrow frames to their IPC stream
  bytes (`Explorer.DataFrame.load_ipc_stream/1` reads them).
  """
  @spec decode(iodata(), keyword() | map()) :: {:ok, term()} | {:error, term()}
  def decode(frame, opts \\ []), do: :tether.decode(IO.iodata_to_binary(frame), Map.new(opts))

  @doc "Header and metadata of a frame, without touching its payload."
  @spec inspect(iodata()) :: {:ok, map()} | {:error, term()}
  def inspect(frame), do: :tether.inspect(IO.iodata_to_binary(frame))

  @doc """
  An ndarray frame from a native-endian, row-major binary (what `Nx.to_binary/1` returns).

      iex> {:ok, t} = Tether.tensor(<<1.0::float-32-native, 2.0::float-32-native>>, {:f, 32}, {2}) |> Tether.decode()
      iex> {t.type, t.shape}
      {{:f, 32}, {2}}
  """
  @spec tensor(binary(), nx_type(), tuple() | [non_neg_integer()]) :: binary()
  def tensor(data, type, shape), do: :tether.tensor(data, type, shape) |> IO.iodata_to_binary()

  @doc "The newest frame in a tether shared-memory region file (written by Python)."
  @spec read_region(Path.t()) :: {:ok, binary()} | {:error, term()}
  def read_region(path), do: :tether.read_region(path)
end
