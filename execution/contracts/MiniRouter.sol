// SPDX-License-Identifier: Apache-2.0
// A minimal constant-product exchange with Uniswap V2's router interface, for the test chain.
//
// MiniPair is a Uniswap V2 pair without LP shares or price oracles: reserves, a 0.3% fee on the
// input, the x*y=k check and the same Swap/Sync events. MiniRouter is the factory and the router:
// the swap functions, getAmountsOut/In and their revert strings are Uniswap V2's, so a client
// written against it talks to a real UniswapV2Router02 unchanged. Liquidity is only ever added.
pragma solidity ^0.8.20;

interface IERC20Like {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
    function balanceOf(address owner) external view returns (uint256);
}

interface IWETH {
    function deposit() external payable;
    function withdraw(uint256 value) external;
    function transfer(address to, uint256 value) external returns (bool);
}

contract MiniPair {
    address public immutable token0;
    address public immutable token1;
    uint112 private reserve0;
    uint112 private reserve1;
    uint256 private unlocked = 1;

    event Swap(
        address indexed sender, uint256 amount0In, uint256 amount1In, uint256 amount0Out,
        uint256 amount1Out, address indexed to
    );
    event Sync(uint112 reserve0, uint112 reserve1);

    modifier lock() {
        require(unlocked == 1, "UniswapV2: LOCKED");
        unlocked = 0;
        _;
        unlocked = 1;
    }

    constructor(address tokenA, address tokenB) {
        (token0, token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
    }

    function getReserves() external view returns (uint112, uint112, uint32) {
        return (reserve0, reserve1, uint32(block.timestamp));
    }

    // Liquidity is whatever the pair holds: transfer tokens in, then sync.
    function sync() external lock {
        _update(IERC20Like(token0).balanceOf(address(this)), IERC20Like(token1).balanceOf(address(this)));
    }

    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata) external lock {
        require(amount0Out > 0 || amount1Out > 0, "UniswapV2: INSUFFICIENT_OUTPUT_AMOUNT");
        require(amount0Out < reserve0 && amount1Out < reserve1, "UniswapV2: INSUFFICIENT_LIQUIDITY");
        require(to != token0 && to != token1, "UniswapV2: INVALID_TO");
        if (amount0Out > 0) require(IERC20Like(token0).transfer(to, amount0Out), "UniswapV2: TRANSFER_FAILED");
        if (amount1Out > 0) require(IERC20Like(token1).transfer(to, amount1Out), "UniswapV2: TRANSFER_FAILED");
        uint256 balance0 = IERC20Like(token0).balanceOf(address(this));
        uint256 balance1 = IERC20Like(token1).balanceOf(address(this));
        uint256 amount0In = balance0 > reserve0 - amount0Out ? balance0 - (reserve0 - amount0Out) : 0;
        uint256 amount1In = balance1 > reserve1 - amount1Out ? balance1 - (reserve1 - amount1Out) : 0;
        require(amount0In > 0 || amount1In > 0, "UniswapV2: INSUFFICIENT_INPUT_AMOUNT");
        uint256 adjusted0 = balance0 * 1000 - amount0In * 3;
        uint256 adjusted1 = balance1 * 1000 - amount1In * 3;
        require(adjusted0 * adjusted1 >= uint256(reserve0) * reserve1 * 1000 ** 2, "UniswapV2: K");
        _update(balance0, balance1);
        emit Swap(msg.sender, amount0In, amount1In, amount0Out, amount1Out, to);
    }

    function _update(uint256 balance0, uint256 balance1) private {
        require(balance0 <= type(uint112).max && balance1 <= type(uint112).max, "UniswapV2: OVERFLOW");
        reserve0 = uint112(balance0);
        reserve1 = uint112(balance1);
        emit Sync(reserve0, reserve1);
    }
}

contract MiniRouter {
    address public immutable WETH;
    mapping(address => mapping(address => address)) public getPair;

    event PairCreated(address indexed token0, address indexed token1, address pair);

    modifier ensure(uint256 deadline) {
        require(deadline >= block.timestamp, "UniswapV2Router: EXPIRED");
        _;
    }

    constructor(address weth) {
        WETH = weth;
    }

    receive() external payable {
        require(msg.sender == WETH, "MiniRouter: only WETH sends ether");
    }

    function createPair(address tokenA, address tokenB) public returns (address pair) {
        require(tokenA != tokenB, "UniswapV2: IDENTICAL_ADDRESSES");
        require(getPair[tokenA][tokenB] == address(0), "UniswapV2: PAIR_EXISTS");
        pair = address(new MiniPair(tokenA, tokenB));
        getPair[tokenA][tokenB] = pair;
        getPair[tokenB][tokenA] = pair;
        emit PairCreated(MiniPair(pair).token0(), MiniPair(pair).token1(), pair);
    }

    // Adds exactly the desired amounts (no ratio matching, no LP shares): enough to seed a test pool.
    function addLiquidity(
        address tokenA, address tokenB, uint256 amountADesired, uint256 amountBDesired, uint256, uint256,
        address, uint256 deadline
    ) external ensure(deadline) returns (uint256, uint256, uint256) {
        address pair = _pairOrNew(tokenA, tokenB);
        _pull(tokenA, msg.sender, pair, amountADesired);
        _pull(tokenB, msg.sender, pair, amountBDesired);
        MiniPair(pair).sync();
        return (amountADesired, amountBDesired, 0);
    }

    function addLiquidityETH(
        address token, uint256 amountTokenDesired, uint256, uint256, address, uint256 deadline
    ) external payable ensure(deadline) returns (uint256, uint256, uint256) {
        address pair = _pairOrNew(token, WETH);
        _pull(token, msg.sender, pair, amountTokenDesired);
        IWETH(WETH).deposit{value: msg.value}();
        require(IWETH(WETH).transfer(pair, msg.value), "MiniRouter: WETH transfer failed");
        MiniPair(pair).sync();
        return (amountTokenDesired, msg.value, 0);
    }

    function swapExactTokensForTokens(
        uint256 amountIn, uint256 amountOutMin, address[] calldata path, address to, uint256 deadline
    ) external ensure(deadline) returns (uint256[] memory amounts) {
        amounts = getAmountsOut(amountIn, path);
        require(amounts[amounts.length - 1] >= amountOutMin, "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT");
        _pull(path[0], msg.sender, _pairFor(path[0], path[1]), amounts[0]);
        _swap(amounts, path, to);
    }

    function swapTokensForExactTokens(
        uint256 amountOut, uint256 amountInMax, address[] calldata path, address to, uint256 deadline
    ) external ensure(deadline) returns (uint256[] memory amounts) {
        amounts = getAmountsIn(amountOut, path);
        require(amounts[0] <= amountInMax, "UniswapV2Router: EXCESSIVE_INPUT_AMOUNT");
        _pull(path[0], msg.sender, _pairFor(path[0], path[1]), amounts[0]);
        _swap(amounts, path, to);
    }

    function swapExactETHForTokens(uint256 amountOutMin, address[] calldata path, address to, uint256 deadline)
        external payable ensure(deadline) returns (uint256[] memory amounts)
    {
        require(path[0] == WETH, "UniswapV2Router: INVALID_PATH");
        amounts = getAmountsOut(msg.value, path);
        require(amounts[amounts.length - 1] >= amountOutMin, "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT");
        _wrapTo(_pairFor(path[0], path[1]), amounts[0]);
        _swap(amounts, path, to);
    }

    function swapTokensForExactETH(
        uint256 amountOut, uint256 amountInMax, address[] calldata path, address to, uint256 deadline
    ) external ensure(deadline) returns (uint256[] memory amounts) {
        require(path[path.length - 1] == WETH, "UniswapV2Router: INVALID_PATH");
        amounts = getAmountsIn(amountOut, path);
        require(amounts[0] <= amountInMax, "UniswapV2Router: EXCESSIVE_INPUT_AMOUNT");
        _pull(path[0], msg.sender, _pairFor(path[0], path[1]), amounts[0]);
        _swap(amounts, path, address(this));
        _unwrapTo(to, amounts[amounts.length - 1]);
    }

    function swapExactTokensForETH(
        uint256 amountIn, uint256 amountOutMin, address[] calldata path, address to, uint256 deadline
    ) external ensure(deadline) returns (uint256[] memory amounts) {
        require(path[path.length - 1] == WETH, "UniswapV2Router: INVALID_PATH");
        amounts = getAmountsOut(amountIn, path);
        require(amounts[amounts.length - 1] >= amountOutMin, "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT");
        _pull(path[0], msg.sender, _pairFor(path[0], path[1]), amounts[0]);
        _swap(amounts, path, address(this));
        _unwrapTo(to, amounts[amounts.length - 1]);
    }

    function swapETHForExactTokens(uint256 amountOut, address[] calldata path, address to, uint256 deadline)
        external payable ensure(deadline) returns (uint256[] memory amounts)
    {
        require(path[0] == WETH, "UniswapV2Router: INVALID_PATH");
        amounts = getAmountsIn(amountOut, path);
        require(amounts[0] <= msg.value, "UniswapV2Router: EXCESSIVE_INPUT_AMOUNT");
        _wrapTo(_pairFor(path[0], path[1]), amounts[0]);
        _swap(amounts, path, to);
        if (msg.value > amounts[0]) {
            (bool ok, ) = msg.sender.call{value: msg.value - amounts[0]}("");
            require(ok, "UniswapV2Router: ETH refund failed");
        }
    }

    function getAmountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut) public pure returns (uint256) {
        require(amountIn > 0, "UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT");
        require(reserveIn > 0 && reserveOut > 0, "UniswapV2Library: INSUFFICIENT_LIQUIDITY");
        uint256 amountInWithFee = amountIn * 997;
        return (amountInWithFee * reserveOut) / (reserveIn * 1000 + amountInWithFee);
    }

    function getAmountIn(uint256 amountOut, uint256 reserveIn, uint256 reserveOut) public pure returns (uint256) {
        require(amountOut > 0, "UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT");
        require(reserveIn > 0 && reserveOut > amountOut, "UniswapV2Library: INSUFFICIENT_LIQUIDITY");
        return (reserveIn * amountOut * 1000) / ((reserveOut - amountOut) * 997) + 1;
    }

    function getAmountsOut(uint256 amountIn, address[] calldata path) public view returns (uint256[] memory amounts) {
        require(path.length >= 2, "UniswapV2Library: INVALID_PATH");
        amounts = new uint256[](path.length);
        amounts[0] = amountIn;
        for (uint256 i; i < path.length - 1; i++) {
            (uint256 reserveIn, uint256 reserveOut) = _reserves(path[i], path[i + 1]);
            amounts[i + 1] = getAmountOut(amounts[i], reserveIn, reserveOut);
        }
    }

    function getAmountsIn(uint256 amountOut, address[] calldata path) public view returns (uint256[] memory amounts) {
        require(path.length >= 2, "UniswapV2Library: INVALID_PATH");
        amounts = new uint256[](path.length);
        amounts[amounts.length - 1] = amountOut;
        for (uint256 i = path.length - 1; i > 0; i--) {
            (uint256 reserveIn, uint256 reserveOut) = _reserves(path[i - 1], path[i]);
            amounts[i - 1] = getAmountIn(amounts[i], reserveIn, reserveOut);
        }
    }

    function _swap(uint256[] memory amounts, address[] calldata path, address to) private {
        for (uint256 i; i < path.length - 1; i++) {
            (address input, address output) = (path[i], path[i + 1]);
            MiniPair pair = MiniPair(_pairFor(input, output));
            uint256 amountOut = amounts[i + 1];
            (uint256 amount0Out, uint256 amount1Out) =
                input == pair.token0() ? (uint256(0), amountOut) : (amountOut, uint256(0));
            address next = i < path.length - 2 ? _pairFor(output, path[i + 2]) : to;
            pair.swap(amount0Out, amount1Out, next, new bytes(0));
        }
    }

    function _reserves(address tokenA, address tokenB) private view returns (uint256, uint256) {
        MiniPair pair = MiniPair(_pairFor(tokenA, tokenB));
        (uint112 reserve0, uint112 reserve1, ) = pair.getReserves();
        return tokenA == pair.token0() ? (uint256(reserve0), uint256(reserve1)) : (uint256(reserve1), uint256(reserve0));
    }

    function _pairFor(address tokenA, address tokenB) private view returns (address pair) {
        pair = getPair[tokenA][tokenB];
        require(pair != address(0), "UniswapV2Library: NO_PAIR");
    }

    function _pairOrNew(address tokenA, address tokenB) private returns (address) {
        address pair = getPair[tokenA][tokenB];
        return pair == address(0) ? createPair(tokenA, tokenB) : pair;
    }

    function _pull(address token, address from, address to, uint256 value) private {
        require(IERC20Like(token).transferFrom(from, to, value), "UniswapV2Router: TRANSFER_FROM_FAILED");
    }

    function _wrapTo(address pair, uint256 value) private {
        IWETH(WETH).deposit{value: value}();
        require(IWETH(WETH).transfer(pair, value), "MiniRouter: WETH transfer failed");
    }

    function _unwrapTo(address to, uint256 value) private {
        IWETH(WETH).withdraw(value);
        (bool ok, ) = to.call{value: value}("");
        require(ok, "UniswapV2Router: ETH transfer failed");
    }
}
