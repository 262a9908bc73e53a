; CSPAD in Cheetah's CXI layout, for peaknet-serve's tests: quadrant Q at fs Q*388,
; its 2x1 module k at ss k*185 (psana panel 8Q + k).

adu_per_eV = 0.00338
res = 9097.525
clen = /LCLS/detector_1/EncoderValue
coffset = 0.573224   ; encoder position plus this, in m
photon_energy = /LCLS/photon_energy_eV

dim0 = %
dim1 = ss
dim2 = fs
data = /entry_1/data_1/data

bad_beamstop/min_x = -12
bad_beamstop/max_x = 12
bad_beamstop/min_y = -12
bad_beamstop/max_y = 12

; a noisy ASIC of quadrant 1 (psana panel 10, its second half)
bad_q1a5/min_fs = 582
bad_q1a5/max_fs = 775
bad_q1a5/min_ss = 370
bad_q1a5/max_ss = 554
bad_q1a5/panel = q1a5

q0a0/min_fs = 0
q0a0/min_ss = 0
q0a0/max_fs = 193
q0a0/max_ss = 184
q0a0/fs = +0.999998x +0.002180y
q0a0/ss = -0.002180x +0.999998y
q0a0/corner_x = 430.000
q0a0/corner_y = 20.000

q0a1/min_fs = 194
q0a1/min_ss = 0
q0a1/max_fs = 387
q0a1/max_ss = 184
q0a1/fs = +0.999998x +0.002180y
q0a1/ss = -0.002180x +0.999998y
q0a1/corner_x = 627.000
q0a1/corner_y = 20.429

q0a2/min_fs = 0
q0a2/min_ss = 185
q0a2/max_fs = 193
q0a2/max_ss = 369
q0a2/fs = +0.999995x +0.003236y
q0a2/ss = -0.003236x +0.999995y
q0a2/corner_x = 435.000
q0a2/corner_y = 220.000

q0a3/min_fs = 194
q0a3/min_ss = 185
q0a3/max_fs = 387
q0a3/max_ss = 369
q0a3/fs = +0.999995x +0.003236y
q0a3/ss = -0.003236x +0.999995y
q0a3/corner_x = 631.999
q0a3/corner_y = 220.637

q0a4/min_fs = 0
q0a4/min_ss = 370
q0a4/max_fs = 193
q0a4/max_ss = 554
q0a4/fs = -0.000247x +1.000000y
q0a4/ss = -1.000000x -0.000247y
q0a4/corner_x = 325.000
q0a4/corner_y = 230.000

q0a5/min_fs = 194
q0a5/min_ss = 370
q0a5/max_fs = 387
q0a5/max_ss = 554
q0a5/fs = -0.000247x +1.000000y
q0a5/ss = -1.000000x -0.000247y
q0a5/corner_x = 324.951
q0a5/corner_y = 427.000

q0a6/min_fs = 0
q0a6/min_ss = 555
q0a6/max_fs = 193
q0a6/max_ss = 739
q0a6/fs = -0.005397x +0.999985y
q0a6/ss = -0.999985x -0.005397y
q0a6/corner_x = 330.000
q0a6/corner_y = 430.000

q0a7/min_fs = 194
q0a7/min_ss = 555
q0a7/max_fs = 387
q0a7/max_ss = 739
q0a7/fs = -0.005397x +0.999985y
q0a7/ss = -0.999985x -0.005397y
q0a7/corner_x = 328.937
q0a7/corner_y = 626.997

q0a8/min_fs = 0
q0a8/min_ss = 740
q0a8/max_fs = 193
q0a8/max_ss = 924
q0a8/fs = -0.999999x +0.001188y
q0a8/ss = -0.001188x -0.999999y
q0a8/corner_x = 220.000
q0a8/corner_y = 440.000

q0a9/min_fs = 194
q0a9/min_ss = 740
q0a9/max_fs = 387
q0a9/max_ss = 924
q0a9/fs = -0.999999x +0.001188y
q0a9/ss = -0.001188x -0.999999y
q0a9/corner_x = 23.000
q0a9/corner_y = 440.234

q0a10/min_fs = 0
q0a10/min_ss = 925
q0a10/max_fs = 193
q0a10/max_ss = 1109
q0a10/fs = -1.000000x +0.000635y
q0a10/ss = -0.000635x -1.000000y
q0a10/corner_x = 225.000
q0a10/corner_y = 640.000

q0a11/min_fs = 194
q0a11/min_ss = 925
q0a11/max_fs = 387
q0a11/max_ss = 1109
q0a11/fs = -1.000000x +0.000635y
q0a11/ss = -0.000635x -1.000000y
q0a11/corner_x = 28.000
q0a11/corner_y = 640.125

q0a12/min_fs = 0
q0a12/min_ss = 1110
q0a12/max_fs = 193
q0a12/max_ss = 1294
q0a12/fs = +0.000238x -1.000000y
q0a12/ss = +1.000000x +0.000238y
q0a12/corner_x = 115.000
q0a12/corner_y = 650.000

q0a13/min_fs = 194
q0a13/min_ss = 1110
q0a13/max_fs = 387
q0a13/max_ss = 1294
q0a13/fs = +0.000238x -1.000000y
q0a13/ss = +1.000000x +0.000238y
q0a13/corner_x = 115.047
q0a13/corner_y = 453.000

q0a14/min_fs = 0
q0a14/min_ss = 1295
q0a14/max_fs = 193
q0a14/max_ss = 1479
q0a14/fs = +0.003017x -0.999995y
q0a14/ss = +0.999995x +0.003017y
q0a14/corner_x = 120.000
q0a14/corner_y = 850.000

q0a15/min_fs = 194
q0a15/min_ss = 1295
q0a15/max_fs = 387
q0a15/max_ss = 1479
q0a15/fs = +0.003017x -0.999995y
q0a15/ss = +0.999995x +0.003017y
q0a15/corner_x = 120.594
q0a15/corner_y = 653.001

q1a0/min_fs = 388
q1a0/min_ss = 0
q1a0/max_fs = 581
q1a0/max_ss = 184
q1a0/fs = +0.000863x +1.000000y
q1a0/ss = -1.000000x +0.000863y
q1a0/corner_x = -20.000
q1a0/corner_y = 430.000

q1a1/min_fs = 582
q1a1/min_ss = 0
q1a1/max_fs = 775
q1a1/max_ss = 184
q1a1/fs = +0.000863x +1.000000y
q1a1/ss = -1.000000x +0.000863y
q1a1/corner_x = -19.830
q1a1/corner_y = 627.000

q1a2/min_fs = 388
q1a2/min_ss = 185
q1a2/max_fs = 581
q1a2/max_ss = 369
q1a2/fs = +0.001310x +0.999999y
q1a2/ss = -0.999999x +0.001310y
q1a2/corner_x = -220.000
q1a2/corner_y = 435.000

q1a3/min_fs = 582
q1a3/min_ss = 185
q1a3/max_fs = 775
q1a3/max_ss = 369
q1a3/fs = +0.001310x +0.999999y
q1a3/ss = -0.999999x +0.001310y
q1a3/corner_x = -219.742
q1a3/corner_y = 632.000

q1a4/min_fs = 388
q1a4/min_ss = 370
q1a4/max_fs = 581
q1a4/max_ss = 554
q1a4/fs = -1.000000x -0.000761y
q1a4/ss = +0.000761x -1.000000y
q1a4/corner_x = -230.000
q1a4/corner_y = 325.000

q1a5/min_fs = 582
q1a5/min_ss = 370
q1a5/max_fs = 775
q1a5/max_ss = 554
q1a5/fs = -1.000000x -0.000761y
q1a5/ss = +0.000761x -1.000000y
q1a5/corner_x = -427.000
q1a5/corner_y = 324.850

q1a6/min_fs = 388
q1a6/min_ss = 555
q1a6/max_fs = 581
q1a6/max_ss = 739
q1a6/fs = -0.999993x -0.003750y
q1a6/ss = +0.003750x -0.999993y
q1a6/corner_x = -430.000
q1a6/corner_y = 330.000

q1a7/min_fs = 582
q1a7/min_ss = 555
q1a7/max_fs = 775
q1a7/max_ss = 739
q1a7/fs = -0.999993x -0.003750y
q1a7/ss = +0.003750x -0.999993y
q1a7/corner_x = -626.999
q1a7/corner_y = 329.261

q1a8/min_fs = 388
q1a8/min_ss = 740
q1a8/max_fs = 581
q1a8/max_ss = 924
q1a8/fs = -0.001250x -0.999999y
q1a8/ss = +0.999999x -0.001250y
q1a8/corner_x = -440.000
q1a8/corner_y = 220.000

q1a9/min_fs = 582
q1a9/min_ss = 740
q1a9/max_fs = 775
q1a9/max_ss = 924
q1a9/fs = -0.001250x -0.999999y
q1a9/ss = +0.999999x -0.001250y
q1a9/corner_x = -440.246
q1a9/corner_y = 23.000

q1a10/min_fs = 388
q1a10/min_ss = 925
q1a10/max_fs = 581
q1a10/max_ss = 1109
q1a10/fs = -0.003833x -0.999993y
q1a10/ss = +0.999993x -0.003833y
q1a10/corner_x = -640.000
q1a10/corner_y = 225.000

q1a11/min_fs = 582
q1a11/min_ss = 925
q1a11/max_fs = 775
q1a11/max_ss = 1109
q1a11/fs = -0.003833x -0.999993y
q1a11/ss = +0.999993x -0.003833y
q1a11/corner_x = -640.755
q1a11/corner_y = 28.001

q1a12/min_fs = 388
q1a12/min_ss = 1110
q1a12/max_fs = 581
q1a12/max_ss = 1294
q1a12/fs = +1.000000x -0.000393y
q1a12/ss = +0.000393x +1.000000y
q1a12/corner_x = -650.000
q1a12/corner_y = 115.000

q1a13/min_fs = 582
q1a13/min_ss = 1110
q1a13/max_fs = 775
q1a13/max_ss = 1294
q1a13/fs = +1.000000x -0.000393y
q1a13/ss = +0.000393x +1.000000y
q1a13/corner_x = -453.000
q1a13/corner_y = 114.923

q1a14/min_fs = 388
q1a14/min_ss = 1295
q1a14/max_fs = 581
q1a14/max_ss = 1479
q1a14/fs = +0.999998x +0.001871y
q1a14/ss = -0.001871x +0.999998y
q1a14/corner_x = -850.000
q1a14/corner_y = 120.000

q1a15/min_fs = 582
q1a15/min_ss = 1295
q1a15/max_fs = 775
q1a15/max_ss = 1479
q1a15/fs = +0.999998x +0.001871y
q1a15/ss = -0.001871x +0.999998y
q1a15/corner_x = -653.000
q1a15/corner_y = 120.369

q2a0/min_fs = 776
q2a0/min_ss = 0
q2a0/max_fs = 969
q2a0/max_ss = 184
q2a0/fs = -0.999999x +0.001628y
q2a0/ss = -0.001628x -0.999999y
q2a0/corner_x = -430.000
q2a0/corner_y = -20.000

q2a1/min_fs = 970
q2a1/min_ss = 0
q2a1/max_fs = 1163
q2a1/max_ss = 184
q2a1/fs = -0.999999x +0.001628y
q2a1/ss = -0.001628x -0.999999y
q2a1/corner_x = -627.000
q2a1/corner_y = -19.679

q2a2/min_fs = 776
q2a2/min_ss = 185
q2a2/max_fs = 969
q2a2/max_ss = 369
q2a2/fs = -1.000000x -0.000373y
q2a2/ss = +0.000373x -1.000000y
q2a2/corner_x = -435.000
q2a2/corner_y = -220.000

q2a3/min_fs = 970
q2a3/min_ss = 185
q2a3/max_fs = 1163
q2a3/max_ss = 369
q2a3/fs = -1.000000x -0.000373y
q2a3/ss = +0.000373x -1.000000y
q2a3/corner_x = -632.000
q2a3/corner_y = -220.073

q2a4/min_fs = 776
q2a4/min_ss = 370
q2a4/max_fs = 969
q2a4/max_ss = 554
q2a4/fs = -0.005607x -0.999984y
q2a4/ss = +0.999984x -0.005607y
q2a4/corner_x = -325.000
q2a4/corner_y = -230.000

q2a5/min_fs = 970
q2a5/min_ss = 370
q2a5/max_fs = 1163
q2a5/max_ss = 554
q2a5/fs = -0.005607x -0.999984y
q2a5/ss = +0.999984x -0.005607y
q2a5/corner_x = -326.105
q2a5/corner_y = -426.997

q2a6/min_fs = 776
q2a6/min_ss = 555
q2a6/max_fs = 969
q2a6/max_ss = 739
q2a6/fs = +0.000064x -1.000000y
q2a6/ss = +1.000000x +0.000064y
q2a6/corner_x = -330.000
q2a6/corner_y = -430.000

q2a7/min_fs = 970
q2a7/min_ss = 555
q2a7/max_fs = 1163
q2a7/max_ss = 739
q2a7/fs = +0.000064x -1.000000y
q2a7/ss = +1.000000x +0.000064y
q2a7/corner_x = -329.987
q2a7/corner_y = -627.000

q2a8/min_fs = 776
q2a8/min_ss = 740
q2a8/max_fs = 969
q2a8/max_ss = 924
q2a8/fs = +1.000000x +0.000308y
q2a8/ss = -0.000308x +1.000000y
q2a8/corner_x = -220.000
q2a8/corner_y = -440.000

q2a9/min_fs = 970
q2a9/min_ss = 740
q2a9/max_fs = 1163
q2a9/max_ss = 924
q2a9/fs = +1.000000x +0.000308y
q2a9/ss = -0.000308x +1.000000y
q2a9/corner_x = -23.000
q2a9/corner_y = -439.939

q2a10/min_fs = 776
q2a10/min_ss = 925
q2a10/max_fs = 969
q2a10/max_ss = 1109
q2a10/fs = +0.999998x +0.001867y
q2a10/ss = -0.001867x +0.999998y
q2a10/corner_x = -225.000
q2a10/corner_y = -640.000

q2a11/min_fs = 970
q2a11/min_ss = 925
q2a11/max_fs = 1163
q2a11/max_ss = 1109
q2a11/fs = +0.999998x +0.001867y
q2a11/ss = -0.001867x +0.999998y
q2a11/corner_x = -28.000
q2a11/corner_y = -639.632

q2a12/min_fs = 776
q2a12/min_ss = 1110
q2a12/max_fs = 969
q2a12/max_ss = 1294
q2a12/fs = -0.000928x +1.000000y
q2a12/ss = -1.000000x -0.000928y
q2a12/corner_x = -115.000
q2a12/corner_y = -650.000

q2a13/min_fs = 970
q2a13/min_ss = 1110
q2a13/max_fs = 1163
q2a13/max_ss = 1294
q2a13/fs = -0.000928x +1.000000y
q2a13/ss = -1.000000x -0.000928y
q2a13/corner_x = -115.183
q2a13/corner_y = -453.000

q2a14/min_fs = 776
q2a14/min_ss = 1295
q2a14/max_fs = 969
q2a14/max_ss = 1479
q2a14/fs = -0.002315x +0.999997y
q2a14/ss = -0.999997x -0.002315y
q2a14/corner_x = -120.000
q2a14/corner_y = -850.000

q2a15/min_fs = 970
q2a15/min_ss = 1295
q2a15/max_fs = 1163
q2a15/max_ss = 1479
q2a15/fs = -0.002315x +0.999997y
q2a15/ss = -0.999997x -0.002315y
q2a15/corner_x = -120.456
q2a15/corner_y = -653.001

q3a0/min_fs = 1164
q3a0/min_ss = 0
q3a0/max_fs = 1357
q3a0/max_ss = 184
q3a0/fs = -0.002983x -0.999996y
q3a0/ss = +0.999996x -0.002983y
q3a0/corner_x = 20.000
q3a0/corner_y = -430.000

q3a1/min_fs = 1358
q3a1/min_ss = 0
q3a1/max_fs = 1551
q3a1/max_ss = 184
q3a1/fs = -0.002983x -0.999996y
q3a1/ss = +0.999996x -0.002983y
q3a1/corner_x = 19.412
q3a1/corner_y = -626.999

q3a2/min_fs = 1164
q3a2/min_ss = 185
q3a2/max_fs = 1357
q3a2/max_ss = 369
q3a2/fs = +0.001981x -0.999998y
q3a2/ss = +0.999998x +0.001981y
q3a2/corner_x = 220.000
q3a2/corner_y = -435.000

q3a3/min_fs = 1358
q3a3/min_ss = 185
q3a3/max_fs = 1551
q3a3/max_ss = 369
q3a3/fs = +0.001981x -0.999998y
q3a3/ss = +0.999998x +0.001981y
q3a3/corner_x = 220.390
q3a3/corner_y = -632.000

q3a4/min_fs = 1164
q3a4/min_ss = 370
q3a4/max_fs = 1357
q3a4/max_ss = 554
q3a4/fs = +0.999988x -0.004954y
q3a4/ss = +0.004954x +0.999988y
q3a4/corner_x = 230.000
q3a4/corner_y = -325.000

q3a5/min_fs = 1358
q3a5/min_ss = 370
q3a5/max_fs = 1551
q3a5/max_ss = 554
q3a5/fs = +0.999988x -0.004954y
q3a5/ss = +0.004954x +0.999988y
q3a5/corner_x = 426.998
q3a5/corner_y = -325.976

q3a6/min_fs = 1164
q3a6/min_ss = 555
q3a6/max_fs = 1357
q3a6/max_ss = 739
q3a6/fs = +0.999998x -0.001791y
q3a6/ss = +0.001791x +0.999998y
q3a6/corner_x = 430.000
q3a6/corner_y = -330.000

q3a7/min_fs = 1358
q3a7/min_ss = 555
q3a7/max_fs = 1551
q3a7/max_ss = 739
q3a7/fs = +0.999998x -0.001791y
q3a7/ss = +0.001791x +0.999998y
q3a7/corner_x = 627.000
q3a7/corner_y = -330.353

q3a8/min_fs = 1164
q3a8/min_ss = 740
q3a8/max_fs = 1357
q3a8/max_ss = 924
q3a8/fs = -0.003318x +0.999994y
q3a8/ss = -0.999994x -0.003318y
q3a8/corner_x = 440.000
q3a8/corner_y = -220.000

q3a9/min_fs = 1358
q3a9/min_ss = 740
q3a9/max_fs = 1551
q3a9/max_ss = 924
q3a9/fs = -0.003318x +0.999994y
q3a9/ss = -0.999994x -0.003318y
q3a9/corner_x = 439.346
q3a9/corner_y = -23.001

q3a10/min_fs = 1164
q3a10/min_ss = 925
q3a10/max_fs = 1357
q3a10/max_ss = 1109
q3a10/fs = -0.002554x +0.999997y
q3a10/ss = -0.999997x -0.002554y
q3a10/corner_x = 640.000
q3a10/corner_y = -225.000

q3a11/min_fs = 1358
q3a11/min_ss = 925
q3a11/max_fs = 1551
q3a11/max_ss = 1109
q3a11/fs = -0.002554x +0.999997y
q3a11/ss = -0.999997x -0.002554y
q3a11/corner_x = 639.497
q3a11/corner_y = -28.001

q3a12/min_fs = 1164
q3a12/min_ss = 1110
q3a12/max_fs = 1357
q3a12/max_ss = 1294
q3a12/fs = -0.999985x +0.005559y
q3a12/ss = -0.005559x -0.999985y
q3a12/corner_x = 650.000
q3a12/corner_y = -115.000

q3a13/min_fs = 1358
q3a13/min_ss = 1110
q3a13/max_fs = 1551
q3a13/max_ss = 1294
q3a13/fs = -0.999985x +0.005559y
q3a13/ss = -0.005559x -0.999985y
q3a13/corner_x = 453.003
q3a13/corner_y = -113.905

q3a14/min_fs = 1164
q3a14/min_ss = 1295
q3a14/max_fs = 1357
q3a14/max_ss = 1479
q3a14/fs = -0.999998x -0.001765y
q3a14/ss = +0.001765x -0.999998y
q3a14/corner_x = 850.000
q3a14/corner_y = -120.000

q3a15/min_fs = 1358
q3a15/min_ss = 1295
q3a15/max_fs = 1551
q3a15/max_ss = 1479
q3a15/fs = -0.999998x -0.001765y
q3a15/ss = +0.001765x -0.999998y
q3a15/corner_x = 653.000
q3a15/corner_y = -120.348

rigid_group_q0 = q0a0,q0a1,q0a2,q0a3,q0a4,q0a5,q0a6,q0a7,q0a8,q0a9,q0a10,q0a11,q0a12,q0a13,q0a14,q0a15
rigid_group_q1 = q1a0,q1a1,q1a2,q1a3,q1a4,q1a5,q1a6,q1a7,q1a8,q1a9,q1a10,q1a11,q1a12,q1a13,q1a14,q1a15
rigid_group_q2 = q2a0,q2a1,q2a2,q2a3,q2a4,q2a5,q2a6,q2a7,q2a8,q2a9,q2a10,q2a11,q2a12,q2a13,q2a14,q2a15
rigid_group_q3 = q3a0,q3a1,q3a2,q3a3,q3a4,q3a5,q3a6,q3a7,q3a8,q3a9,q3a10,q3a11,q3a12,q3a13,q3a14,q3a15
rigid_group_a0 = q0a0,q0a1
rigid_group_a1 = q0a2,q0a3
rigid_group_a2 = q0a4,q0a5
rigid_group_a3 = q0a6,q0a7
rigid_group_a4 = q0a8,q0a9
rigid_group_a5 = q0a10,q0a11
rigid_group_a6 = q0a12,q0a13
rigid_group_a7 = q0a14,q0a15
rigid_group_a8 = q1a0,q1a1
rigid_group_a9 = q1a2,q1a3
rigid_group_a10 = q1a4,q1a5
rigid_group_a11 = q1a6,q1a7
rigid_group_a12 = q1a8,q1a9
rigid_group_a13 = q1a10,q1a11
rigid_group_a14 = q1a12,q1a13
rigid_group_a15 = q1a14,q1a15
rigid_group_a16 = q2a0,q2a1
rigid_group_a17 = q2a2,q2a3
rigid_group_a18 = q2a4,q2a5
rigid_group_a19 = q2a6,q2a7
rigid_group_a20 = q2a8,q2a9
rigid_group_a21 = q2a10,q2a11
rigid_group_a22 = q2a12,q2a13
rigid_group_a23 = q2a14,q2a15
rigid_group_a24 = q3a0,q3a1
rigid_group_a25 = q3a2,q3a3
rigid_group_a26 = q3a4,q3a5
rigid_group_a27 = q3a6,q3a7
rigid_group_a28 = q3a8,q3a9
rigid_group_a29 = q3a10,q3a11
rigid_group_a30 = q3a12,q3a13
rigid_group_a31 = q3a14,q3a15
rigid_group_collection_quadrants = q0,q1,q2,q3
rigid_group_collection_asics = a0,a1,a2,a3,a4,a5,a6,a7,a8,a9,a10,a11,a12,a13,a14,a15,a16,a17,a18,a19,a20,a21,a22,a23,a24,a25,a26,a27,a28,a29,a30,a31
